//! `berth ping`.

use serde_json::json;

use crate::args::PingArgs;
use crate::connect::client;
use crate::exit::Failure;
use crate::output::print_json;
use crate::parse::parse_host;

/// Checks that a registry answers the /v2/ API.
pub async fn ping(a: PingArgs) -> Result<(), Failure> {
    let host = parse_host(&a.host)?;
    let c = client(&host, &a.common, None)?;
    c.ping().await?;
    if a.common.json {
        print_json(
            &json!({"registry": host, "ok": true, "url": c.base_url().await.unwrap_or_default()}),
        );
    } else {
        println!("{host}: OK");
    }
    Ok(())
}
