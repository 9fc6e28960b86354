//! Tracing setup for the binary: logs go to stderr, as text or JSON lines.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber, writing each line to stderr as it comes (the maintenance
/// commands). `RUST_LOG` overrides `level` when set.
pub fn init(level: &str, json: bool) {
    install(level, json, std::io::stderr);
}

/// Installs the global subscriber for the server: lines go to stderr from a writer thread
/// that writes whatever has queued in one system call, so that the access log (a line per
/// request) does not cost every request a write. The queue never drops a line (a full
/// queue makes the logging request wait). Hold the guard until the server has stopped: its
/// drop writes what is still queued.
pub fn init_server(level: &str, json: bool) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::BufWriter::with_capacity(
            64 << 10,
            std::io::stderr(),
        ));
    install(level, json, writer);
    guard
}

fn install<W>(level: &str, json: bool, writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
