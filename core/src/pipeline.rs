//! The publish pipeline: the one way a core stores and distributes, so that
//! what it distributes leaves in cursor order and nothing stored is left
//! undistributed.
//!
//! # Two stages
//! - The **sequencer** takes every job waiting (publishes and peers'
//!   replicas, up to [`MAX_GROUP`] messages) and stores them with one `put`,
//!   one group at a time. The store stamps cursors in put order, so each
//!   group's cursors are later than the previous group's.
//! - The **distributor** takes the stored groups in order and publishes
//!   the messages they inserted to the `paths` exchange, in cursor order,
//!   then answers the jobs. A duplicate is never distributed again: its
//!   first copy was, or is still owed (below). So a UUID published twice is
//!   one message at any distance in time.
//!
//! # Owed distribution
//! The distributor keeps `through`: every message this store holds at or
//! before that cursor has been handed to the postoffice. It is saved in the
//! store as the `distributed` checkpoint. When the postoffice refuses (an
//! outage) the distributor falls *behind*: it answers the publishers with
//! `unavailable` (stored, resend later) and, with backoff, reads what the
//! store holds after `through` and distributes it in order until it has
//! caught up. A core that restarts after a crash starts behind from its
//! checkpoint. A resend of a message still owed is answered `unavailable`
//! until it has gone out, so `ok` always means stored *and* distributed.
//!
//! Catching up distributes peers' replicas stored meanwhile too; gateways
//! drop those copies by UUID (their window of recent UUIDs).
//!
//! # On a shared store
//! Cores sharing a store ([`Store::is_shared`]) each distribute what their
//! own stamper inserted, and nothing else:
//! - Each keeps its own checkpoint, named after its stamper
//!   ([`checkpoint_name`]); catching up reads everything stored after it
//!   and hands on only the messages whose cursor carries its stamper
//!   ([`Cursor::stamper`]). Others' messages are their cores' to hand on.
//!   A handle's stamper is new with each process, so a core that starts
//!   has nothing of its own to catch up on.
//! - A publish that is a duplicate of a message another stamper inserted
//!   (a gold publish every core stores, or a resend after the core that
//!   took it died) is handed on here unless that stamper's checkpoint
//!   says its first copy went out; gateways drop a second copy by UUID.
//!   So a core that died between storing and distributing leaves nothing
//!   acknowledged undelivered: the publisher's resend reaches another
//!   core, which distributes it before it answers.
//! - A put that failed may still have claimed some of its UUIDs (a shared
//!   engine writes row by row). Their resend is a duplicate with a cursor
//!   this core's checkpoint may already cover, so the pipeline remembers
//!   the UUIDs of failed puts ([`UNSURE`] of them) and hands such a
//!   duplicate on.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use postmesh_router::backoff::Backoff;
use postmesh_router::{Exchange, Outgoing, Postoffice, Properties};
use postmesh_schema::protocol::msg_frame_at;
use postmesh_schema::{Class, Cursor, Message, Pattern, Uuid};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::CoreError;
use crate::metrics::CoreMetrics;
use crate::store::{Put, PutOutcome, Store, StoreError};

/// Most messages stored by one `put` of the sequencer.
pub const MAX_GROUP: usize = 4096;
/// Jobs that may wait for the sequencer; beyond it publishes fail with
/// `Overloaded` (503) rather than queue without bound.
pub const JOB_QUEUE: usize = 4096;
/// Bytes of messages (body and meta, plus [`MESSAGE_OVERHEAD`] each) that
/// may be in the pipeline at once, waiting or being stored and
/// distributed; beyond it publishes fail with `Overloaded`.
pub const PIPELINE_BYTES: u32 = 256 << 20;
/// Most bytes of messages one group stores.
pub const MAX_GROUP_BYTES: usize = 32 << 20;
/// What a message costs the pipeline besides its body and meta.
const MESSAGE_OVERHEAD: usize = 256;
/// Stored groups waiting for the distributor.
const STORED_QUEUE: usize = 4;
/// Messages read from the store per step of catching up.
const CATCH_UP_PAGE: usize = 1000;
/// How often the `distributed` checkpoint is saved at most.
const SAVE_EVERY: Duration = Duration::from_millis(100);
/// The checkpoint's name in a private store; on a shared store it is
/// followed by the stamper ([`checkpoint_name`]).
pub const CHECKPOINT: &str = "distributed";
/// UUIDs of failed puts remembered on a shared store (see the module
/// documentation); the oldest are forgotten first.
pub const UNSURE: usize = 65_536;

/// The name of the `distributed` checkpoint of the core whose stamper is
/// `stamper`: [`CHECKPOINT`] on a private store, which has one writer;
/// `distributed.<stamper in hex>` on a shared one, where each core keeps
/// its own.
pub fn checkpoint_name(shared: bool, stamper: [u8; 8]) -> String {
    if shared {
        let hex: String = stamper.iter().map(|b| format!("{b:02x}")).collect();
        format!("{CHECKPOINT}.{hex}")
    } else {
        CHECKPOINT.to_owned()
    }
}

/// UUIDs whose put failed, at most [`UNSURE`].
#[derive(Default)]
struct Unsure {
    set: HashSet<Uuid>,
    order: VecDeque<Uuid>,
}

impl Unsure {
    fn add(&mut self, uuid: Uuid) {
        if self.set.insert(uuid) {
            self.order.push_back(uuid);
            while self.order.len() > UNSURE {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}
/// The longest wait between two attempts to catch up.
const MAX_RETRY: Duration = Duration::from_secs(5);

/// What a job's messages are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Publishes: stored, then distributed by this core.
    Publish,
    /// A peer's replicas: stored only (the peer distributed them).
    Replica,
}

struct Job {
    /// Moved into the group when the sequencer takes the job.
    messages: Vec<Message>,
    /// How many messages the job has (its share of the group).
    len: usize,
    /// Its bytes, held from the pipeline's budget until it is answered.
    bytes: OwnedSemaphorePermit,
    kind: Kind,
    reply: oneshot::Sender<Result<Vec<Put>, CoreError>>,
}

impl Job {
    /// Gives its bytes back to the budget, then answers: a publisher that
    /// has its answer finds the budget free again.
    fn answer(self, answer: Result<Vec<Put>, CoreError>) {
        drop(self.bytes);
        let _ = self.reply.send(answer);
    }
}

/// A group the sequencer stored: its jobs, their messages and outcomes.
struct Stored {
    jobs: Vec<Job>,
    messages: Vec<Message>,
    puts: Vec<Put>,
}

/// The running pipeline of one core.
pub struct Pipeline {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    /// The bytes the pipeline may hold ([`PIPELINE_BYTES`]).
    budget: Arc<Semaphore>,
    capacity: u32,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Pipeline {
    /// Starts both stages over `store`. Reads the `distributed` checkpoint
    /// first: what was stored after it is still owed.
    pub async fn start(
        store: Arc<dyn Store>,
        postoffice: Arc<dyn Postoffice>,
        metrics: CoreMetrics,
    ) -> Result<Pipeline, StoreError> {
        Self::start_with_budget(store, postoffice, metrics, PIPELINE_BYTES).await
    }

    /// [`Pipeline::start`] with a byte budget of its own.
    async fn start_with_budget(
        store: Arc<dyn Store>,
        postoffice: Arc<dyn Postoffice>,
        metrics: CoreMetrics,
        budget: u32,
    ) -> Result<Pipeline, StoreError> {
        let shared = store.is_shared();
        let own = store.stamper();
        let name = checkpoint_name(shared, own);
        let newest = store.newest().await?;
        let mut saved = store.checkpoint(&name).await?;
        if saved.is_none() {
            // A store from before checkpoints (what it holds went out when
            // it was stored), a new one, or (shared) a new stamper that has
            // stored nothing yet: start the checkpoint now, so that a crash
            // before the first save still leaves one.
            let start = newest.unwrap_or(Cursor::at_ticks(0));
            store.set_checkpoint(&name, start).await?;
            saved = Some(start);
        }
        let through = saved;
        let behind = matches!((saved, newest), (Some(s), Some(n)) if s < n);
        if behind {
            tracing::info!(from = %through.expect("behind a checkpoint"), "distributing what a previous run stored but did not hand on");
        }
        let (jobs_tx, jobs_rx) = mpsc::channel(JOB_QUEUE);
        let (stored_tx, stored_rx) = mpsc::channel(STORED_QUEUE);
        let unsure = Arc::new(Mutex::new(Unsure::default()));
        let sequencer = tokio::spawn(sequence(
            jobs_rx,
            stored_tx,
            store.clone(),
            metrics.clone(),
            shared.then(|| unsure.clone()),
        ));
        let distributor = Distributor {
            store,
            shared,
            own,
            name,
            unsure,
            postoffice,
            metrics,
            through,
            behind,
            saved,
            save_next: Instant::now() + SAVE_EVERY,
            save_backoff: None,
            backoff: Backoff::new(MAX_RETRY),
        };
        let distributor = tokio::spawn(distributor.run(stored_rx));
        Ok(Pipeline {
            jobs: Mutex::new(Some(jobs_tx)),
            budget: Arc::new(Semaphore::new(budget as usize)),
            capacity: budget,
            tasks: Mutex::new(vec![sequencer, distributor]),
        })
    }

    /// Stores (and for [`Kind::Publish`], distributes) `messages`; one
    /// [`Put`] per message, in order.
    pub async fn submit(&self, messages: Vec<Message>, kind: Kind) -> Result<Vec<Put>, CoreError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        let jobs = self.jobs.lock().clone().ok_or(StoreError::Closed)?;
        let size: usize = messages.iter().map(|m| m.size() + MESSAGE_OVERHEAD).sum();
        // A job larger than the whole budget waits for all of it.
        let size = u32::try_from(size).unwrap_or(u32::MAX).min(self.capacity);
        let bytes = self
            .budget
            .clone()
            .try_acquire_many_owned(size)
            .map_err(|_| StoreError::Overloaded)?;
        jobs.try_send(Job {
            len: messages.len(),
            messages,
            bytes,
            kind,
            reply,
        })
        .map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StoreError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
        })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Takes no new jobs, finishes the ones taken, saves the checkpoint.
    pub async fn close(&self) {
        self.jobs.lock().take();
        let tasks = std::mem::take(&mut *self.tasks.lock());
        for t in tasks {
            let _ = t.await;
        }
    }
}

async fn sequence(
    mut jobs: mpsc::Receiver<Job>,
    stored: mpsc::Sender<Stored>,
    store: Arc<dyn Store>,
    metrics: CoreMetrics,
    unsure: Option<Arc<Mutex<Unsure>>>,
) {
    while let Some(first) = jobs.recv().await {
        let (mut n, mut bytes) = (first.len, first.bytes.num_permits());
        let mut group = vec![first];
        while n < MAX_GROUP && bytes < MAX_GROUP_BYTES {
            match jobs.try_recv() {
                Ok(j) => {
                    n += j.len;
                    bytes += j.bytes.num_permits();
                    group.push(j);
                }
                Err(_) => break,
            }
        }
        let messages: Vec<Message> = group
            .iter_mut()
            .flat_map(|j| std::mem::take(&mut j.messages))
            .collect();
        let put = store.put(messages.clone()).await;
        match put {
            Ok(puts) => {
                for p in &puts {
                    match p.outcome {
                        PutOutcome::Inserted => metrics.persisted.inc(),
                        PutOutcome::Duplicate => metrics.duplicates.inc(),
                    };
                }
                let group = Stored {
                    jobs: group,
                    messages,
                    puts,
                };
                if stored.send(group).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                if let Some(unsure) = &unsure {
                    let mut unsure = unsure.lock();
                    for m in &messages {
                        unsure.add(m.uuid);
                    }
                }
                for j in group {
                    j.answer(Err(e.clone().into()));
                }
            }
        }
    }
}

/// The distributor's state; see the module documentation.
struct Distributor {
    store: Arc<dyn Store>,
    /// The store is shared: hand on only what this stamper inserted.
    shared: bool,
    /// This core's stamper.
    own: [u8; 8],
    /// This core's checkpoint ([`checkpoint_name`]).
    name: String,
    /// UUIDs of failed puts (shared store only).
    unsure: Arc<Mutex<Unsure>>,
    postoffice: Arc<dyn Postoffice>,
    metrics: CoreMetrics,
    /// Everything stored at or before it has been distributed.
    through: Option<Cursor>,
    /// The postoffice refused: what was stored after `through` is owed.
    behind: bool,
    saved: Option<Cursor>,
    /// The next save is tried no sooner.
    save_next: Instant,
    /// While saving fails (the store is down): how long until the next try.
    save_backoff: Option<Backoff>,
    backoff: Backoff,
}

impl Distributor {
    async fn run(mut self, mut stored: mpsc::Receiver<Stored>) {
        let mut retry = Duration::ZERO;
        loop {
            let unsaved = self.through != self.saved;
            let save_at = tokio::time::Instant::from_std(self.save_next);
            tokio::select! {
                group = stored.recv() => match group {
                    Some(g) => self.handle(g).await,
                    None => break,
                },
                _ = tokio::time::sleep(retry), if self.behind => self.catch_up().await,
                // A quiet moment: save how far it got.
                _ = tokio::time::sleep_until(save_at), if unsaved => self.save(true).await,
            }
            retry = if self.behind {
                self.backoff.next_delay()
            } else {
                self.backoff = Backoff::new(MAX_RETRY);
                Duration::ZERO
            };
            self.save(false).await;
        }
        if self.behind {
            self.catch_up().await;
        }
        self.save(true).await;
    }

    async fn handle(&mut self, g: Stored) {
        // Shared store: duplicates whose first copy is known to be out
        // (`vouched`), and those this core hands on itself (`forward`).
        let mut vouched: HashSet<usize> = HashSet::new();
        let mut forward: HashSet<usize> = HashSet::new();
        if self.shared && !self.behind {
            let mut owners: HashMap<[u8; 8], Option<Cursor>> = HashMap::new();
            let mut i = 0;
            for job in &g.jobs {
                for _ in 0..job.len {
                    let (m, p) = (&g.messages[i], &g.puts[i]);
                    if job.kind == Kind::Publish && p.outcome == PutOutcome::Duplicate {
                        match self.first_copy_out(m.uuid, p.cursor, &mut owners).await {
                            Some(true) => {
                                vouched.insert(i);
                            }
                            Some(false) => {
                                forward.insert(i);
                            }
                            // This core's own, judged by `through` below.
                            None => {}
                        }
                    }
                    i += 1;
                }
            }
        }
        if !self.behind {
            let mut out = Vec::new();
            let mut i = 0;
            for job in &g.jobs {
                for _ in 0..job.len {
                    let (m, p) = (&g.messages[i], &g.puts[i]);
                    let inserted = job.kind == Kind::Publish
                        && p.outcome == PutOutcome::Inserted
                        && Some(p.cursor) > self.through;
                    if inserted || forward.contains(&i) {
                        out.push(outgoing(m, p.cursor));
                    }
                    i += 1;
                }
            }
            let sent = out.len() as u64;
            match self.postoffice.publish_all(Exchange::Paths, out).await {
                Ok(()) => {
                    self.metrics.distributed.inc_by(sent);
                    let newest = g
                        .puts
                        .iter()
                        .filter(|p| p.outcome == PutOutcome::Inserted)
                        .map(|p| p.cursor)
                        .max();
                    self.through = self.through.max(newest);
                    if self.shared {
                        // Out now: no longer in doubt.
                        let mut unsure = self.unsure.lock();
                        for (m, p) in g.messages.iter().zip(&g.puts) {
                            if p.outcome == PutOutcome::Inserted {
                                unsure.set.remove(&m.uuid);
                            }
                        }
                        for i in &forward {
                            unsure.set.remove(&g.messages[*i].uuid);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "distribution failed; catching up from the store");
                    self.behind = true;
                    forward.clear();
                }
            }
        }
        if self.behind {
            self.catch_up().await;
        }
        let mut i = 0;
        let mut puts = g.puts.into_iter();
        for job in g.jobs {
            let mine: Vec<Put> = puts.by_ref().take(job.len).collect();
            let out = job.kind == Kind::Replica
                || mine.iter().enumerate().all(|(k, p)| {
                    let at = i + k;
                    vouched.contains(&at)
                        || forward.contains(&at)
                        || (self.is_own(p)
                            && !(p.outcome == PutOutcome::Duplicate
                                && self.is_unsure(&g.messages[at].uuid))
                            && Some(p.cursor) <= self.through)
                });
            i += job.len;
            let answer = if out {
                Ok(mine)
            } else {
                Err(CoreError::Undistributed)
            };
            job.answer(answer);
        }
    }

    /// Whether `p` is this core's to hand on: on a private store every
    /// message is; on a shared one, those its own stamper inserted.
    fn is_own(&self, p: &Put) -> bool {
        !self.shared || p.cursor.stamper() == self.own
    }

    /// Whether a put of `uuid` failed here and it has not gone out since
    /// (shared store).
    fn is_unsure(&self, uuid: &Uuid) -> bool {
        self.shared && self.unsure.lock().set.contains(uuid)
    }

    /// Whether the first copy of a duplicate (shared store) is known to
    /// have gone out: not after a failed put of its UUID here (`false`);
    /// `None` when this stamper inserted it (judged by `through`); else
    /// whether its stamper's checkpoint reached it (read once per group and
    /// stamper; a failed read counts as not out).
    async fn first_copy_out(
        &self,
        uuid: Uuid,
        cursor: Cursor,
        owners: &mut HashMap<[u8; 8], Option<Cursor>>,
    ) -> Option<bool> {
        if self.is_unsure(&uuid) {
            return Some(false);
        }
        let stamper = cursor.stamper();
        if stamper == self.own {
            return None;
        }
        let reached = match owners.get(&stamper) {
            Some(c) => *c,
            None => {
                let c = self
                    .store
                    .checkpoint(&checkpoint_name(true, stamper))
                    .await
                    .unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "reading a peer's checkpoint failed");
                        None
                    });
                owners.insert(stamper, c);
                c
            }
        };
        Some(reached.is_some_and(|r| cursor <= r))
    }

    /// Distributes what the store holds after `through`, in order, until
    /// there is nothing more or the postoffice refuses.
    async fn catch_up(&mut self) {
        let everything = Pattern::parse("#").expect("a valid pattern");
        loop {
            let from = self.through.unwrap_or(Cursor::at_ticks(0));
            let page = match self
                .store
                .since(everything.clone(), from, CATCH_UP_PAGE)
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "reading what is owed failed");
                    return;
                }
            };
            let Some(last) = page.messages.last().and_then(|m| m.cursor) else {
                self.behind = false;
                return;
            };
            // On a shared store, only what this core's stamper inserted.
            let out: Vec<Outgoing> = page
                .messages
                .iter()
                .filter_map(|m| m.cursor.map(|c| (m, c)))
                .filter(|(_, c)| !self.shared || c.stamper() == self.own)
                .map(|(m, c)| outgoing(m, c))
                .collect();
            let sent = out.len() as u64;
            if let Err(e) = self.postoffice.publish_all(Exchange::Paths, out).await {
                tracing::debug!(error = %e, "catching up failed; retrying");
                return;
            }
            self.metrics.distributed.inc_by(sent);
            self.through = Some(last);
            if !page.more {
                self.behind = false;
                tracing::info!(through = %last, "caught up: everything stored is distributed");
                return;
            }
        }
    }

    async fn save(&mut self, now: bool) {
        let Some(through) = self.through else {
            return;
        };
        if self.saved == Some(through) || (!now && Instant::now() < self.save_next) {
            return;
        }
        // Tried again no sooner than SAVE_EVERY after a save, and backing
        // off (up to MAX_RETRY) while it fails, so that a store outage
        // is neither hammered nor logged ten times a second.
        match self.store.set_checkpoint(&self.name, through).await {
            Ok(()) => {
                self.saved = Some(through);
                self.save_next = Instant::now() + SAVE_EVERY;
                if self.save_backoff.take().is_some() {
                    tracing::info!("saving the distribution checkpoint works again");
                }
            }
            Err(e) => {
                let backoff = match &mut self.save_backoff {
                    Some(b) => {
                        tracing::debug!(error = %e, "saving the distribution checkpoint failed again");
                        b
                    }
                    None => {
                        tracing::warn!(error = %e, "saving the distribution checkpoint failed; retrying with backoff");
                        self.save_backoff.insert(Backoff::new(MAX_RETRY))
                    }
                };
                self.save_next = Instant::now() + backoff.next_delay();
            }
        }
    }
}

/// The AMQP priority of a class: gold and silver overtake bronze.
pub fn priority(class: Class) -> u8 {
    match class {
        Class::Gold => 2,
        Class::Silver => 1,
        Class::Bronze => 0,
    }
}

/// The `paths` message of a stored message: routing key = path, the frame
/// devices receive (with its cursor), and the cursor for gateways. Every
/// class is persistent: a message crossing regions waits in durable
/// federation link queues, and a hub that crashes loses what is not
/// persistent there, with no sign to the devices that would reread it;
/// and gateways' queues are durable, so that what a link handed to a
/// region survives that region's broker crashing before the gateway took
/// it (see `QueueSpec::of_process`).
fn outgoing(m: &Message, cursor: Cursor) -> Outgoing {
    Outgoing {
        routing_key: m.path.as_str().to_owned(),
        payload: Bytes::from(msg_frame_at(m, Some(&cursor))),
        props: Properties {
            message_id: Some(m.uuid.to_string()),
            kind: Some("msg".into()),
            priority: Some(priority(m.class)),
            persistent: true,
            cursor: Some(cursor.to_string()),
            ..Properties::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use async_trait::async_trait;
    use postmesh_router::{Consumer, MemoryPostoffice, PostofficeError, QueueSpec};
    use postmesh_schema::{Body, Path, Uuid};

    use super::*;
    use crate::store::{EmbeddedOptions, EmbeddedStore};

    /// The embedded postoffice, refusing every publish while `down`.
    struct Flaky {
        inner: MemoryPostoffice,
        down: AtomicBool,
    }

    #[async_trait]
    impl Postoffice for Flaky {
        async fn declare_queue(&self, spec: &QueueSpec) -> Result<(), PostofficeError> {
            self.inner.declare_queue(spec).await
        }
        async fn delete_queue(&self, name: &str) -> Result<(), PostofficeError> {
            self.inner.delete_queue(name).await
        }
        async fn bind(&self, e: Exchange, q: &str, p: &str) -> Result<(), PostofficeError> {
            self.inner.bind(e, q, p).await
        }
        async fn unbind(&self, e: Exchange, q: &str, p: &str) -> Result<(), PostofficeError> {
            self.inner.unbind(e, q, p).await
        }
        async fn publish(&self, e: Exchange, m: Outgoing) -> Result<(), PostofficeError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(PostofficeError::Connection("down".into()));
            }
            self.inner.publish(e, m).await
        }
        async fn consume(&self, q: &str, prefetch: u16) -> Result<Consumer, PostofficeError> {
            self.inner.consume(q, prefetch).await
        }
    }

    fn message(path: &str) -> Message {
        Message::new(Path::parse(path).unwrap(), Body::None)
    }

    async fn setup(dir: &std::path::Path) -> (Arc<EmbeddedStore>, Arc<Flaky>, Consumer) {
        let store = Arc::new(EmbeddedStore::open(dir, EmbeddedOptions::default()).unwrap());
        let po = Arc::new(Flaky {
            inner: MemoryPostoffice::new(),
            down: AtomicBool::new(false),
        });
        po.declare_queue(&QueueSpec::transient("q")).await.unwrap();
        po.bind(Exchange::Paths, "q", "#").await.unwrap();
        let consumer = po.consume("q", 1000).await.unwrap();
        (store, po, consumer)
    }

    /// The UUIDs and cursors delivered until nothing comes for a while.
    async fn drain(consumer: &mut Consumer) -> Vec<(Uuid, Cursor)> {
        let mut got = Vec::new();
        while let Ok(Some(d)) =
            tokio::time::timeout(Duration::from_millis(700), consumer.next()).await
        {
            let uuid = d.props.message_id.as_deref().unwrap().parse().unwrap();
            let cursor = d.props.cursor.as_deref().unwrap().parse().unwrap();
            got.push((uuid, cursor));
            d.ack().await.unwrap();
        }
        got
    }

    /// Refused by the postoffice, a publish is stored, answered
    /// `Undistributed` (as is its resend while it is owed), and goes out
    /// once the postoffice is back: once, in cursor order. A later resend
    /// is a duplicate and goes nowhere.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn what_the_postoffice_refused_goes_out_once_in_order_when_it_is_back() {
        let dir = tempfile::tempdir().unwrap();
        let (store, po, mut consumer) = setup(dir.path()).await;
        let pipeline = Pipeline::start(store.clone(), po.clone(), CoreMetrics::default())
            .await
            .unwrap();
        let (m1, m2, m3) = (message("a.1"), message("a.2"), message("a.3"));
        po.down.store(true, Ordering::SeqCst);
        for m in [&m1, &m1, &m2] {
            let r = pipeline.submit(vec![m.clone()], Kind::Publish).await;
            assert!(matches!(r, Err(CoreError::Undistributed)), "{r:?}");
        }
        assert!(store.get(m2.uuid).await.unwrap().is_some(), "stored");
        po.down.store(false, Ordering::SeqCst);
        let got = drain(&mut consumer).await;
        assert_eq!(
            got.iter().map(|g| g.0).collect::<Vec<_>>(),
            [m1.uuid, m2.uuid],
            "caught up from the store, once each"
        );
        assert!(got[0].1 < got[1].1);
        let again = pipeline
            .submit(vec![m1.clone()], Kind::Publish)
            .await
            .unwrap();
        assert_eq!(again[0].outcome, PutOutcome::Duplicate);
        assert_eq!(again[0].cursor, got[0].1);
        pipeline
            .submit(vec![m3.clone()], Kind::Publish)
            .await
            .unwrap();
        let got = drain(&mut consumer).await;
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [m3.uuid]);
        pipeline.close().await;
    }

    /// The pipeline holds a bounded number of bytes: past them a publish is
    /// refused at once (`Overloaded`, a 503), not queued.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn publishes_past_the_byte_budget_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (store, po, _consumer) = setup(dir.path()).await;
        let p = Pipeline::start_with_budget(store, po, CoreMetrics::default(), 4096)
            .await
            .unwrap();
        let mut m = message("c.1");
        m.body = Body::json(&serde_json::json!("y".repeat(2000)));
        // Most of the budget is held (as by jobs being stored).
        let held = p.budget.clone().try_acquire_many_owned(3000).unwrap();
        let r = p.submit(vec![m.clone()], Kind::Publish).await;
        assert!(
            matches!(r, Err(CoreError::Store(StoreError::Overloaded))),
            "{r:?}"
        );
        drop(held);
        p.submit(vec![m], Kind::Publish).await.unwrap();
        // The budget came back once the job was answered.
        assert_eq!(p.budget.available_permits(), 4096);
        p.close().await;
    }

    /// What a crashed core stored but never handed on goes out when it
    /// starts again; what it had handed on does not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restart_distributes_what_a_crash_left_undistributed() {
        let dir = tempfile::tempdir().unwrap();
        let (m0, m1) = (message("b.0"), message("b.1"));
        {
            let (store, po, _consumer) = setup(dir.path()).await;
            let pipeline = Pipeline::start(store.clone(), po, CoreMetrics::default())
                .await
                .unwrap();
            pipeline
                .submit(vec![m0.clone()], Kind::Publish)
                .await
                .unwrap();
            pipeline.close().await;
            // Stored by a core that died before it distributed.
            store.put(vec![m1.clone()]).await.unwrap();
            store.close();
        }
        let (store, po, mut consumer) = setup(dir.path()).await;
        let pipeline = Pipeline::start(store.clone(), po, CoreMetrics::default())
            .await
            .unwrap();
        let got = drain(&mut consumer).await;
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [m1.uuid]);
        assert_eq!(
            store.checkpoint(CHECKPOINT).await.unwrap(),
            Some(got[0].1),
            "the checkpoint follows"
        );
        // A replica is stored, never distributed by this core.
        let replica = message("b.2");
        pipeline.submit(vec![replica], Kind::Replica).await.unwrap();
        assert!(drain(&mut consumer).await.is_empty());
        pipeline.close().await;
    }
}
