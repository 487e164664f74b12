//! The loop over channels: no sockets, full control over timing.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_channel::mpsc;
use postmesh_core::{Page, Published};
use postmesh_router::MemoryPostoffice;
use postmesh_schema::{Body, Path, Uuid};
use serde_json::Value;
use tokio::sync::Notify;

use super::replay::LATE_READ_ATTEMPTS;
use super::*;
use crate::metrics::GatewayMetrics;

/// A transport made of two channels.
struct Pipe {
    rx: mpsc::UnboundedReceiver<Inbound>,
    tx: mpsc::UnboundedSender<Outbound>,
}

impl Stream for Pipe {
    type Item = Inbound;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        Pin::new(&mut self.rx).poll_next(cx)
    }
}

impl Sink<Outbound> for Pipe {
    type Error = mpsc::SendError;
    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.tx).poll_ready(cx)
    }
    fn start_send(mut self: Pin<&mut Self>, item: Outbound) -> Result<(), Self::Error> {
        Pin::new(&mut self.tx).start_send(item)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.tx).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.tx).poll_close(cx)
    }
}

/// A core whose history answer the test releases when it wants; with
/// `since_pages`, its `since` answers so too, with the next of them.
#[derive(Default)]
struct HeldCore {
    page: parking_lot::Mutex<Option<Page>>,
    since_pages: Option<parking_lot::Mutex<std::collections::VecDeque<Page>>>,
    release: Notify,
    asked: Notify,
}

#[async_trait::async_trait]
impl CoreClient for HeldCore {
    async fn publish(&self, _: Vec<Message>) -> Result<Vec<Published>, CoreError> {
        unimplemented!("not used")
    }
    async fn history(
        &self,
        _: Pattern,
        _: usize,
        _: Option<Cursor>,
        _: Option<u64>,
    ) -> Result<Page, CoreError> {
        self.asked.notify_one();
        self.release.notified().await;
        Ok(self.page.lock().take().unwrap_or_default())
    }
    async fn since(
        &self,
        _: Pattern,
        _: Cursor,
        _: usize,
        _: Option<u64>,
    ) -> Result<Page, CoreError> {
        let Some(pages) = &self.since_pages else {
            return Ok(Page::default());
        };
        self.asked.notify_one();
        self.release.notified().await;
        Ok(pages.lock().pop_front().unwrap_or_default())
    }
    async fn latest(&self, _: Pattern, _: usize, _: Option<u64>) -> Result<Page, CoreError> {
        Ok(Page::default())
    }
    async fn dismiss(&self, _: u64, _: Uuid) -> Result<(), CoreError> {
        Ok(())
    }
}

/// A second postoffice outage while the reread of the first is under way:
/// that read may already have passed what the second outage lost, so the
/// patterns are read again once it is done.
#[tokio::test]
async fn an_outage_during_a_reread_is_reread_too() {
    let cancel = CancellationToken::new();
    let metrics = GatewayMetrics::default();
    let hub = memory_hub(&metrics, &cancel).await;
    let lost = Message {
        cursor: Some(Cursor::now()),
        ..message("a.lost")
    };
    let core = Arc::new(HeldCore {
        // The first reread finds nothing: `lost` is stored after it read.
        since_pages: Some(parking_lot::Mutex::new(
            [
                Page::default(),
                Page {
                    messages: vec![lost.clone()],
                    ..Page::default()
                },
            ]
            .into(),
        )),
        ..HeldCore::default()
    });
    let (input, mut out, _) = spawn_session(
        &hub,
        core.clone(),
        GatewayConfig::default(),
        metrics,
        &cancel,
    );
    input
        .unbounded_send(Inbound::Text(Frame::from(
            r#"{"op":"sub","id":1,"pattern":"a.#"}"#,
        )))
        .unwrap();
    assert_eq!(next(&mut out).await["op"], "ok");
    hub.reread_all(Cursor::now());
    tokio::time::timeout(Duration::from_secs(5), core.asked.notified())
        .await
        .expect("the first reread reads");
    // The second outage, while the first reread waits for its page.
    hub.reread_all(Cursor::now());
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    core.release.notify_one();
    let first = next(&mut out).await;
    assert_eq!(
        (first["op"].as_str(), first["replayed"].as_u64()),
        (Some("reread"), Some(0))
    );
    tokio::time::timeout(Duration::from_secs(5), core.asked.notified())
        .await
        .expect("a second reread follows");
    core.release.notify_one();
    let m = next(&mut out).await;
    assert_eq!(m["uuid"], lost.uuid.to_string(), "{m}");
    let second = next(&mut out).await;
    assert_eq!(
        (second["op"].as_str(), second["replayed"].as_u64()),
        (Some("reread"), Some(1))
    );
    cancel.cancel();
}

/// A message with no body at `path`.
pub(super) fn message(path: &str) -> Message {
    Message::new(Path::parse(path).unwrap(), Body::None)
}

/// The live frame of `m`, as the hub fans it out.
pub(super) fn live(m: &Message) -> Arc<Live> {
    Arc::new(Live {
        uuid: m.uuid,
        cursor: m.cursor,
        path: m.path.to_string(),
        frame: Frame::try_from(msg_frame(m)).unwrap(),
        kind: LiveKind::Message,
    })
}

/// A hub on an in-process postoffice.
async fn memory_hub(metrics: &GatewayMetrics, cancel: &CancellationToken) -> Arc<Hub> {
    Hub::start(
        Arc::new(MemoryPostoffice::new()),
        "gw".into(),
        1024,
        metrics.clone(),
        cancel.clone(),
        None,
        None,
    )
    .await
    .unwrap()
}

async fn next(out: &mut mpsc::UnboundedReceiver<Outbound>) -> Value {
    match tokio::time::timeout(Duration::from_secs(5), out.next()).await {
        Ok(Some(Outbound::Text(t))) => serde_json::from_str(t.as_str()).unwrap(),
        other => panic!("expected a frame, got {other:?}"),
    }
}

/// A message that arrives live while a replay is pending, through another
/// active subscription, is not replayed again; one that is in the replay
/// and also buffered goes out once; one whose live copy arrives after the
/// replay is dropped.
#[tokio::test]
async fn replay_and_live_merge_without_duplicates() {
    let cancel = CancellationToken::new();
    let metrics = GatewayMetrics::default();
    let hub = memory_hub(&metrics, &cancel).await;
    let core = Arc::new(HeldCore::default());
    let (in_tx, mut out, session) = spawn_session(
        &hub,
        core.clone(),
        GatewayConfig::default(),
        metrics,
        &cancel,
    );
    let send = |s: &str| in_tx.unbounded_send(Inbound::Text(Frame::from(s))).unwrap();

    send(r#"{"op":"sub","id":1,"pattern":"b.y"}"#);
    assert_eq!(next(&mut out).await["op"], "ok");
    send(r#"{"op":"sub","id":2,"pattern":"b.#","history":10}"#);
    core.asked.notified().await;

    let (m0, m2, m3) = (message("b.old"), message("b.x"), message("b.y"));
    // m3 matches the active `b.y`: delivered at once.
    hub.fan_out(&live(&m3));
    assert_eq!(next(&mut out).await["uuid"], m3.uuid.to_string());
    // m2 matches only the pending `b.#`: held back.
    hub.fan_out(&live(&m2));
    // The store read saw m0, m2 and m3 (newest first).
    *core.page.lock() = Some(Page {
        messages: vec![m3.clone(), m2.clone(), m0.clone()],
        more: false,
        ..Page::default()
    });
    core.release.notify_one();
    assert_eq!(next(&mut out).await["uuid"], m0.uuid.to_string());
    assert_eq!(next(&mut out).await["uuid"], m2.uuid.to_string());
    let ok = next(&mut out).await;
    assert_eq!(
        (
            ok["op"].as_str(),
            ok["id"].as_u64(),
            ok["replayed"].as_u64()
        ),
        (Some("ok"), Some(2), Some(2))
    );
    // m0's live copy was still on its way: dropped.
    hub.fan_out(&live(&m0));
    let m4 = message("b.z");
    hub.fan_out(&live(&m4));
    assert_eq!(
        next(&mut out).await["uuid"],
        m4.uuid.to_string(),
        "nothing in between"
    );

    cancel.cancel();
    session.await.unwrap();
    match out.next().await {
        Some(Outbound::Close(code, _)) => assert_eq!(code, close::GOING_AWAY),
        other => panic!("expected a close, got {other:?}"),
    }
}

/// A live frame of about `size` bytes at `path`.
fn padded(path: &str, size: usize) -> Arc<Live> {
    let m = message(path);
    let frame =
        serde_json::json!({"op": "msg", "path": path, "uuid": m.uuid, "pad": "x".repeat(size)});
    Arc::new(Live {
        uuid: m.uuid,
        cursor: None,
        path: path.to_owned(),
        frame: Frame::from(frame.to_string()),
        kind: LiveKind::Message,
    })
}

/// Runs a session on a pipe, against `hub` and `core`: its input, its
/// output and its task.
fn spawn_session(
    hub: &Arc<Hub>,
    core: Arc<dyn CoreClient>,
    config: GatewayConfig,
    metrics: GatewayMetrics,
    cancel: &CancellationToken,
) -> (
    mpsc::UnboundedSender<Inbound>,
    mpsc::UnboundedReceiver<Outbound>,
    tokio::task::JoinHandle<()>,
) {
    let ctx = Arc::new(Ctx {
        hub: hub.clone(),
        core,
        authority: Authority::new(None),
        config,
        metrics,
    });
    let (in_tx, in_rx) = mpsc::unbounded();
    let (out_tx, out) = mpsc::unbounded();
    let task = tokio::spawn(run(
        Pipe {
            rx: in_rx,
            tx: out_tx,
        },
        ctx,
        Grants::open(),
        Options::default(),
        cancel.clone(),
    ));
    (in_tx, out, task)
}

/// A session on a pipe, with the hub to fan out to it.
type Started = (
    Arc<Hub>,
    mpsc::UnboundedSender<Inbound>,
    mpsc::UnboundedReceiver<Outbound>,
    CancellationToken,
);

/// A session started on a pipe against `core`, with the hub to fan out to
/// it.
async fn session_on(core: Arc<dyn CoreClient>, config: GatewayConfig) -> Started {
    let cancel = CancellationToken::new();
    let metrics = GatewayMetrics::default();
    let hub = memory_hub(&metrics, &cancel).await;
    let (in_tx, out, _) = spawn_session(&hub, core, config, metrics, &cancel);
    (hub, in_tx, out, cancel)
}

/// [`session_on`] a core that has nothing stored.
async fn session_with(config: GatewayConfig) -> Started {
    session_on(Arc::new(HeldCore::default()), config).await
}

/// What a session writes no longer counts against its outbox's byte
/// bound: a device that keeps up receives far more than the bound.
#[tokio::test]
async fn written_frames_release_their_bytes() {
    let config = GatewayConfig {
        outbound_bytes: 64 * 1024,
        ..GatewayConfig::default()
    };
    let (hub, input, mut out, cancel) = session_with(config).await;
    input
        .unbounded_send(Inbound::Text(Frame::from(
            r#"{"op":"sub","id":1,"pattern":"a.#"}"#,
        )))
        .unwrap();
    assert_eq!(next(&mut out).await["op"], "ok");
    // 1 MiB in all, 16 times the bound, one frame at a time.
    for i in 0..1024 {
        let live = padded(&format!("a.{i}"), 1024);
        assert_eq!(hub.fan_out(&live), 1, "queued");
        assert_eq!(next(&mut out).await["uuid"], live.uuid.to_string());
    }
    // Past the bound at once, it is closed as a slow consumer.
    for i in 0..100 {
        hub.fan_out(&padded(&format!("a.{i}"), 1024));
    }
    let mut closed = None;
    while let Ok(Some(o)) = tokio::time::timeout(Duration::from_secs(5), out.next()).await {
        if let Outbound::Close(code, _) = o {
            closed = Some(code);
            break;
        }
    }
    assert_eq!(closed, Some(close::SLOW_CONSUMER));
    cancel.cancel();
}
/// A session resuming `a.#` with `since` on a core that answers `pages`
/// in turn (each released at once), with `resume_settle_ms` of `settle`:
/// its hub, its input (the session ends when it is dropped), its output
/// and its cancel token.
async fn resuming_on(pages: Vec<Page>, settle: Option<u64>) -> Started {
    let core = Arc::new(HeldCore {
        since_pages: Some(parking_lot::Mutex::new(pages.into())),
        ..HeldCore::default()
    });
    // Every read is released as soon as it asks.
    let releaser = core.clone();
    tokio::spawn(async move {
        loop {
            releaser.asked.notified().await;
            releaser.release.notify_one();
        }
    });
    let config = GatewayConfig {
        resume_settle_ms: settle,
        ..GatewayConfig::default()
    };
    let started = session_on(core, config).await;
    started
        .1
        .unbounded_send(Inbound::Text(Frame::from(format!(
            r#"{{"op":"sub","id":1,"pattern":"a.#","since":"{}"}}"#,
            Cursor::now()
        ))))
        .unwrap();
    started
}

/// Asserts that the session sends nothing within `ms` milliseconds.
async fn nothing_within(out: &mut mpsc::UnboundedReceiver<Outbound>, ms: u64, why: &str) {
    let got = tokio::time::timeout(Duration::from_millis(ms), out.next()).await;
    assert!(got.is_err(), "{why}: got {got:?}");
}

/// A page of `messages`.
fn page_of(messages: &[&Message]) -> Page {
    Page {
        messages: messages.iter().map(|m| (*m).clone()).collect(),
        ..Page::default()
    }
}

fn stale() -> Page {
    Page {
        stale: true,
        ..Page::default()
    }
}

/// A message stored after `Cursor::now()` at `path`.
fn stored(path: &str) -> Message {
    Message {
        cursor: Some(Cursor::now()),
        ..message(path)
    }
}

/// A message another core stored before the subscription was live, whose
/// replica reached the core the resume read only after it read: neither
/// the replay nor the live stream had it. The late read, `resume_settle_ms`
/// later, sends it (marked late), and nothing the device already had.
#[tokio::test]
async fn a_resume_reads_again_for_what_arrived_late() {
    let (replayed, straggler) = (stored("a.replayed"), stored("a.late"));
    let pages = vec![
        // The resume: the replica is not there yet.
        page_of(&[&replayed]),
        // The late read: it is, beside what was replayed.
        page_of(&[&replayed, &straggler]),
    ];
    let (hub, _input, mut out, cancel) = resuming_on(pages, Some(300)).await;
    assert_eq!(next(&mut out).await["uuid"], replayed.uuid.to_string());
    let ok = next(&mut out).await;
    let resumed = std::time::Instant::now();
    assert_eq!(
        (ok["op"].as_str(), ok["replayed"].as_u64()),
        (Some("ok"), Some(1))
    );
    let live_meanwhile = message("a.live");
    hub.fan_out(&live(&live_meanwhile));
    assert_eq!(
        next(&mut out).await["uuid"],
        live_meanwhile.uuid.to_string()
    );
    let late = next(&mut out).await;
    assert_eq!(
        (late["uuid"].as_str(), late["late"].as_bool()),
        (Some(straggler.uuid.to_string().as_str()), Some(true))
    );
    assert!(
        resumed.elapsed() >= Duration::from_millis(250),
        "after the settle time"
    );
    // Nothing else: no second copy, no `reread` frame; live goes on.
    let after = message("a.after");
    hub.fan_out(&live(&after));
    assert_eq!(next(&mut out).await["uuid"], after.uuid.to_string());
    cancel.cancel();
}

/// Without a settle time (one core on the embedded postoffice) a resume
/// reads once: what a second read would find never comes.
#[tokio::test]
async fn without_a_settle_time_a_resume_reads_once() {
    let straggler = stored("a.late");
    let pages = vec![Page::default(), page_of(&[&straggler])];
    let (_hub, _input, mut out, cancel) = resuming_on(pages, None).await;
    assert_eq!(next(&mut out).await["op"], "ok");
    nothing_within(&mut out, 500, "no second read").await;
    cancel.cancel();
}

/// While the core says a peer's replicas may be on their way (a link
/// between regions down), the late read is made again, later each time,
/// and finds the straggler once they have landed.
#[tokio::test]
async fn a_late_read_is_made_again_while_replicas_may_be_on_their_way() {
    let straggler = stored("a.late");
    let started = std::time::Instant::now();
    let pages = vec![Page::default(), stale(), stale(), page_of(&[&straggler])];
    let (_hub, _input, mut out, cancel) = resuming_on(pages, Some(50)).await;
    assert_eq!(next(&mut out).await["op"], "ok");
    let late = next(&mut out).await;
    assert_eq!(
        (late["uuid"].as_str(), late["late"].as_bool()),
        (Some(straggler.uuid.to_string().as_str()), Some(true)),
        "{late}"
    );
    // 50, 100 and 200 ms after the resume.
    assert!(started.elapsed() >= Duration::from_millis(350));
    nothing_within(&mut out, 600, "the last read was not stale").await;
    cancel.cancel();
}

/// A core that says stale through every attempt: the device is told its
/// resume may have a gap, once.
#[tokio::test]
async fn late_reads_that_stay_stale_end_with_a_gap() {
    let pages = std::iter::once(Page::default())
        .chain((0..LATE_READ_ATTEMPTS).map(|_| stale()))
        .collect();
    let (_hub, _input, mut out, cancel) = resuming_on(pages, Some(50)).await;
    assert_eq!(next(&mut out).await["op"], "ok");
    // 50 + 100 + 200 + 400 + 800 ms.
    let told = next(&mut out).await;
    assert_eq!(
        (
            told["op"].as_str(),
            told["gap"].as_bool(),
            told["more"].as_bool()
        ),
        (Some("reread"), Some(true), Some(false)),
        "{told}"
    );
    nothing_within(&mut out, 500, "no further read").await;
    cancel.cancel();
}
