//! berth-builder's integration tests against real tools, as one test binary: the streaming
//! pipeline and archive passthrough (gzip, pigz, zstd, GNU tar) and the folder-to-tar writer
//! (GNU tar), and the push orchestration against CNCF Distribution 2.8 (`push_plan`). `memory.rs` stays a binary of its own: it measures the process's peak memory.

mod common;

mod pipeline_tools;
mod push_plan;
mod tar_layout;
