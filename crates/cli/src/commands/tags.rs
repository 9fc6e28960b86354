//! `berth tags`.

use berth_client::ListOptions;
use serde_json::json;

use crate::args::TagsArgs;
use crate::connect::client;
use crate::exit::Failure;
use crate::output::print_json;
use crate::parse::parse_ref;

/// Lists the tags of a repository, with `--digests` each tag's digest.
pub async fn tags(a: TagsArgs) -> Result<(), Failure> {
    let r = parse_ref(&a.repo)?;
    let c = client(&r.registry, &a.common, None)?;
    let opts = ListOptions {
        limit: a.limit,
        last: a.last,
        page_size: None,
    };
    let tags = c.tags(&r.repository, Some(&opts)).await?;
    if a.digests {
        let pairs = c.tag_digests(&r.repository, &tags).await?;
        if a.common.json {
            let list: Vec<_> = pairs
                .iter()
                .map(|(t, d)| json!({"tag": t, "digest": d}))
                .collect();
            print_json(&json!({"name": r.repository, "tags": list}));
        } else {
            for (t, d) in pairs {
                println!("{t}\t{d}");
            }
        }
    } else if a.common.json {
        print_json(&json!({"name": r.repository, "tags": tags}));
    } else {
        for t in tags {
            println!("{t}");
        }
    }
    Ok(())
}
