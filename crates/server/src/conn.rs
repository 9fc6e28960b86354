//! Guarding connections against clients that hold them without using them.
//!
//! One idle limit ([`crate::ServerOptions::idle_timeout`]) applies to everything a client can
//! leave hanging:
//! - a connection with no request in flight that sends nothing (a silent socket, an idle
//!   keep-alive connection, a TLS session that never sends a request) is closed;
//! - a request body that sends nothing for that long fails the request (a stalled upload
//!   keeps what it had durably stored and can resume);
//! - a response the client stops reading (a write that makes no progress) closes the
//!   connection, which drops the response and whatever fed it.
//!
//! Counting requests in flight per connection is what lets the socket-level read limit tell
//! an idle connection from one whose request is still being worked on: hyper keeps a read
//! pending while it writes a response (to notice a client that went away), so a plain read
//! timeout would cut long downloads and slow handlers. Written here because neither hyper nor
//! axum-server offers per-connection idle limits that know about requests in flight.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::body::Body;
use axum_server::accept::Accept;
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// What a connection's socket wrapper and its service share.
#[derive(Default)]
struct Activity {
    /// Requests whose response has not been sent (or dropped) yet.
    in_flight: AtomicUsize,
    /// The task waiting on a read, woken when the last request in flight ends so that it
    /// starts counting idle time.
    reader: Mutex<Option<Waker>>,
}

impl Activity {
    fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }
}

/// One request in flight; dropping it (the response was sent or abandoned) ends it.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1
            && let Some(w) = self.0.reader.lock().expect("reader lock").take()
        {
            w.wake();
        }
    }
}

/// An acceptor (under TLS, when there is TLS) that guards each connection.
#[derive(Clone, Debug)]
pub(crate) struct GuardAcceptor {
    pub idle: Duration,
}

impl<I, S> Accept<I, S> for GuardAcceptor {
    type Stream = Guarded<I>;
    type Service = Counted<S>;
    type Future = std::future::Ready<io::Result<(Guarded<I>, Counted<S>)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let activity = Arc::new(Activity::default());
        std::future::ready(Ok((
            Guarded {
                inner: stream,
                idle: self.idle,
                activity: activity.clone(),
                read_idle: None,
                write_stall: None,
            },
            Counted {
                inner: service,
                idle: self.idle,
                activity,
            },
        )))
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_owned())
}

/// Polls a deadline started at the first `Pending`; true once it has passed.
fn expired(deadline: &mut Option<Pin<Box<Sleep>>>, limit: Duration, cx: &mut Context<'_>) -> bool {
    deadline
        .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)))
        .as_mut()
        .poll(cx)
        .is_ready()
}

/// A socket with the idle limits (see the module's documentation).
pub(crate) struct Guarded<I> {
    inner: I,
    idle: Duration,
    activity: Arc<Activity>,
    read_idle: Option<Pin<Box<Sleep>>>,
    write_stall: Option<Pin<Box<Sleep>>>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Guarded<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.read_idle = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                *this.activity.reader.lock().expect("reader lock") = Some(cx.waker().clone());
                if this.activity.in_flight.load(Ordering::SeqCst) > 0 {
                    this.read_idle = None;
                    return Poll::Pending;
                }
                if expired(&mut this.read_idle, this.idle, cx) {
                    return Poll::Ready(Err(timed_out("connection idle: closed")));
                }
                Poll::Pending
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> Guarded<I> {
    /// A write-side poll: `Pending` for longer than the limit means the client stopped reading.
    fn stall_checked<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(Pin<&mut I>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match poll(Pin::new(&mut self.inner), cx) {
            Poll::Ready(r) => {
                self.write_stall = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                if expired(&mut self.write_stall, self.idle, cx) {
                    return Poll::Ready(Err(timed_out(
                        "the client stopped reading the response: connection closed",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Guarded<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.stall_checked(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.stall_checked(cx, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stall_checked(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stall_checked(cx, |io, cx| io.poll_shutdown(cx))
    }
}

/// A connection's service: counts requests in flight and limits request-body idleness.
#[derive(Clone)]
pub(crate) struct Counted<S> {
    inner: S,
    idle: Duration,
    activity: Arc<Activity>,
}

impl<S, B> tower::Service<Request<B>> for Counted<S>
where
    S: tower::Service<Request<IdleBody<B>>, Response = Response<Body>>,
    S::Future: Send + 'static,
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let guard = self.activity.start();
        let idle = self.idle;
        let fut = self.inner.call(req.map(|body| IdleBody {
            inner: body,
            idle,
            waiting: None,
        }));
        Box::pin(async move {
            let res = fut.await?;
            Ok(res.map(|body| {
                Body::new(ResponseBody {
                    inner: body,
                    _in_flight: guard,
                })
            }))
        })
    }
}

/// A request body that fails once the client has sent nothing for the idle limit.
pub(crate) struct IdleBody<B> {
    inner: B,
    idle: Duration,
    waiting: Option<Pin<Box<Sleep>>>,
}

impl<B> HttpBody for IdleBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                this.waiting = None;
                Poll::Ready(r.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                if expired(&mut this.waiting, this.idle, cx) {
                    let secs = this.idle.as_secs_f64();
                    return Poll::Ready(Some(Err(timed_out(&format!(
                        "the client sent no request body data for {secs} s"
                    ))
                    .into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that ends its request's time in flight when it is done or dropped.
struct ResponseBody {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
