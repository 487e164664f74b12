//! Several cores on one CQL keyspace, in one process: each keeps its own
//! `distributed` checkpoint and hands on only what its own stamper
//! inserted, and a duplicate whose first copy never went out is handed on
//! by the core that received it. Against the real Cassandra node
//! (`POSTMESH_CQL`) and the embedded postoffice (one broker for every core,
//! refusing publishes for one core while `down`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use postmesh_core::pipeline::checkpoint_name;
use postmesh_core::{Core, CoreClient, CoreError, CoreMetrics, Store};
use postmesh_router::{
    Consumer, Exchange, MemoryPostoffice, Outgoing, Postoffice, PostofficeError, QueueSpec,
};
use postmesh_schema::{Body, Cursor, Message, Path, Pattern, Uuid};

/// One core's door to the shared broker, which it can close.
struct Door {
    broker: MemoryPostoffice,
    down: AtomicBool,
}

#[async_trait]
impl Postoffice for Door {
    async fn declare_queue(&self, spec: &QueueSpec) -> Result<(), PostofficeError> {
        self.broker.declare_queue(spec).await
    }
    async fn delete_queue(&self, name: &str) -> Result<(), PostofficeError> {
        self.broker.delete_queue(name).await
    }
    async fn bind(&self, e: Exchange, q: &str, p: &str) -> Result<(), PostofficeError> {
        self.broker.bind(e, q, p).await
    }
    async fn unbind(&self, e: Exchange, q: &str, p: &str) -> Result<(), PostofficeError> {
        self.broker.unbind(e, q, p).await
    }
    async fn publish(&self, e: Exchange, m: Outgoing) -> Result<(), PostofficeError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(PostofficeError::Connection("down".into()));
        }
        self.broker.publish(e, m).await
    }
    async fn consume(&self, q: &str, prefetch: u16) -> Result<Consumer, PostofficeError> {
        self.broker.consume(q, prefetch).await
    }
}

fn message(path: &str) -> Message {
    Message::new(Path::parse(path).unwrap(), Body::None)
}

/// UUIDs delivered (with how many times each) until nothing comes for a
/// while.
async fn drain(consumer: &mut Consumer) -> HashMap<Uuid, usize> {
    let mut got = HashMap::new();
    while let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(1500), consumer.next()).await
    {
        let uuid: Uuid = d.props.message_id.as_deref().unwrap().parse().unwrap();
        *got.entry(uuid).or_default() += 1;
        d.ack().await.unwrap();
    }
    got
}

fn once(uuids: &[Uuid]) -> HashMap<Uuid, usize> {
    uuids.iter().map(|u| (*u, 1)).collect()
}

async fn core(store: Arc<dyn Store>, door: Arc<Door>) -> Core {
    Core::start(store, door, CoreMetrics::default(), Default::default())
        .await
        .expect("a core starts")
}

async fn publish(core: &Core, m: &Message) -> Result<bool, CoreError> {
    core.publish(vec![m.clone()]).await.map(|p| p[0].duplicate)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cores_sharing_a_keyspace_each_distribute_their_own() {
    let keyspace = postmesh_tests::cql::Keyspace::fresh("cores").await;
    let broker = MemoryPostoffice::new();
    broker
        .declare_queue(&QueueSpec::transient("devices"))
        .await
        .unwrap();
    broker.bind(Exchange::Paths, "devices", "#").await.unwrap();
    let mut devices = broker.consume("devices", 1000).await.unwrap();
    let door = || {
        Arc::new(Door {
            broker: broker.clone(),
            down: AtomicBool::new(false),
        })
    };
    let (store_a, store_b) = (keyspace.store().await, keyspace.store().await);
    assert!(store_a.is_shared());
    assert_ne!(store_a.stamper(), store_b.stamper());
    let (door_a, door_b) = (door(), door());
    let a = core(store_a.clone(), door_a.clone()).await;
    let b = core(store_b.clone(), door_b.clone()).await;

    // Each core's publishes go out once.
    let (a1, a2, b1, b2) = (
        message("s.a.1"),
        message("s.a.2"),
        message("s.b.1"),
        message("s.b.2"),
    );
    for (c, m) in [(&a, &a1), (&b, &b1), (&a, &a2), (&b, &b2)] {
        assert!(!publish(c, m).await.unwrap());
    }
    assert_eq!(
        drain(&mut devices).await,
        once(&[a1.uuid, a2.uuid, b1.uuid, b2.uuid])
    );

    // B's broker refuses: its publish is stored and owed. A publishes
    // meanwhile. When B's broker is back, B catches up on its own message
    // only: A's is not handed on a second time.
    door_b.down.store(true, Ordering::SeqCst);
    let (b3, a3) = (message("s.b.3"), message("s.a.3"));
    assert!(matches!(
        publish(&b, &b3).await,
        Err(CoreError::Undistributed)
    ));
    assert!(!publish(&a, &a3).await.unwrap());
    door_b.down.store(false, Ordering::SeqCst);
    assert_eq!(drain(&mut devices).await, once(&[a3.uuid, b3.uuid]));

    // Each core keeps its own checkpoint, named after its stamper.
    let name_a = checkpoint_name(true, store_a.stamper());
    let name_b = checkpoint_name(true, store_b.stamper());
    assert_ne!(name_a, name_b);
    let cursor_of = |m: &Message| {
        let store = store_a.clone();
        let uuid = m.uuid;
        async move { store.get(uuid).await.unwrap().unwrap().cursor.unwrap() }
    };
    let reached = |name: String| {
        let store = store_a.clone();
        async move { store.checkpoint(&name).await.unwrap() }
    };
    let (ca3, cb3) = (cursor_of(&a3).await, cursor_of(&b3).await);
    assert_eq!(ca3.stamper(), store_a.stamper());
    assert_eq!(cb3.stamper(), store_b.stamper());
    // Each reached its own last message (B's catch-up read past A's a3).
    assert!(reached(name_a.clone()).await >= Some(ca3));
    assert!(reached(name_b.clone()).await >= Some(cb3));
    assert_eq!(
        reached(postmesh_core::pipeline::CHECKPOINT.into()).await,
        None,
        "no shared checkpoint on a shared store"
    );

    // A stored a message and died before handing it on (its checkpoint is
    // behind it). The publisher's resend reaches B: a duplicate, which B
    // hands on before it answers.
    let orphan = message("s.orphan");
    store_a.put(vec![orphan.clone()]).await.unwrap();
    assert!(publish(&b, &orphan).await.unwrap(), "a duplicate");
    assert_eq!(drain(&mut devices).await, once(&[orphan.uuid]));
    // A resend of what A did hand on goes nowhere: A's checkpoint says so.
    assert!(publish(&b, &a1).await.unwrap());
    assert!(drain(&mut devices).await.is_empty());

    // A third core started afterwards reads everything at once and has
    // nothing of its own to catch up on.
    let store_c = keyspace.store().await;
    let c = core(store_c.clone(), door()).await;
    let page = c
        .history(Pattern::parse("s.#").unwrap(), 100, None, None)
        .await
        .unwrap();
    let mut seen: Vec<Uuid> = page.messages.iter().map(|m| m.uuid).collect();
    seen.sort();
    let mut want = vec![
        a1.uuid,
        a2.uuid,
        a3.uuid,
        b1.uuid,
        b2.uuid,
        b3.uuid,
        orphan.uuid,
    ];
    want.sort();
    assert_eq!(seen, want);
    assert!(drain(&mut devices).await.is_empty());
    let c_start: Option<Cursor> = reached(checkpoint_name(true, store_c.stamper())).await;
    assert!(c_start >= Some(cb3), "a new core starts at the newest");

    for core in [a, b, c] {
        core.close().await;
    }
    for s in [store_a, store_b, store_c] {
        s.close().await;
    }
    keyspace.drop_now().await;
}
