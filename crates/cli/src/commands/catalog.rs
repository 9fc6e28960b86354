//! `berth catalog` and `berth search`: a registry's repositories.

use berth_client::ListOptions;

use crate::args::{CatalogArgs, SearchArgs};
use crate::connect::client;
use crate::exit::Failure;
use crate::output::print_list;
use crate::parse::parse_host;

/// Lists the repositories of a registry.
pub async fn catalog(a: CatalogArgs) -> Result<(), Failure> {
    let host = parse_host(&a.host)?;
    let c = client(&host, &a.common, None)?;
    let repos = c
        .catalog(Some(&ListOptions {
            limit: a.limit,
            ..Default::default()
        }))
        .await?;
    print_list(&a.common, "repositories", &repos);
    Ok(())
}

/// Lists the repositories whose name matches a pattern.
pub async fn search(a: SearchArgs) -> Result<(), Failure> {
    let host = parse_host(&a.host)?;
    let c = client(&host, &a.common, None)?;
    let repos = c.search(&a.pattern).await?;
    print_list(&a.common, "repositories", &repos);
    Ok(())
}
