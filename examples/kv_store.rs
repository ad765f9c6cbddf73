//! A small replicated key-value store on `tom`, using nothing but the crate's public API.
//!
//! Three members of one group (threads of this process) each keep a copy of the store as a
//! [`tom::Replicated`] state: a command (`set KEY VALUE`, `del KEY`) is multicast, and every member
//! applies the commands in the group's total order, so every copy goes through the same states. The
//! run shows each part of the API:
//!
//! 1. the members join the group through its helper, each with a reader thread on its events;
//! 2. each multicasts a `set` and waits until its own message is delivered (its state then has it);
//! 3. rank 3 leaves cleanly while its reader thread takes the events (the leave still knows it is done);
//! 4. the other two go on writing;
//! 5. rank 3 comes back as a new life of its rank: the group hands it the store as it was at its join
//!    position (state transfer), and it reads its typed state back;
//! 6. it writes again, every copy ends up equal, and everyone leaves.
//!
//! ```sh
//! cargo run --example kv_store                                  # with a helper inside this process
//! tom-helper --size 3 --bind 127.0.0.1 --port 9999 &             # or with a real helper:
//! cargo run --example kv_store -- --helper 127.0.0.1:9999
//! ```
//!
//! It prints what happens and ends with `kv_store: OK` (exit 0), or says what went wrong (exit 1).

use std::collections::BTreeMap;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tom::{Config, Delivery, Event, Helper, HelperConfig, Member, Rank, Replicated, ReplicatedState};

/// How long any one step may take before the run calls it a failure.
const STEP: Duration = Duration::from_secs(60);

/// The store: keys to values, and how many commands it has applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Store {
    entries: BTreeMap<String, String>,
    applied: u64,
}

impl Store {
    fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }
}

impl Replicated for Store {
    fn apply(&mut self, delivery: &Delivery) {
        let command = String::from_utf8_lossy(delivery.payload.as_bytes());
        let mut words = command.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("set"), Some(key), Some(value)) => {
                self.entries.insert(key.to_string(), value.to_string());
            }
            (Some("del"), Some(key), None) => {
                self.entries.remove(key);
            }
            _ => {} // not a command: every member ignores it alike
        }
        self.applied += 1;
    }

    /// `applied`, then each entry as two length-prefixed strings (big-endian u32 lengths).
    fn snapshot(&self) -> Vec<u8> {
        let mut bytes = self.applied.to_be_bytes().to_vec();
        for (key, value) in &self.entries {
            for text in [key, value] {
                bytes.extend_from_slice(&(text.len() as u32).to_be_bytes());
                bytes.extend_from_slice(text.as_bytes());
            }
        }
        bytes
    }

    fn restore(&mut self, snapshot: &[u8]) {
        *self = Store::decode(snapshot).unwrap_or_default();
    }
}

impl Store {
    fn decode(mut bytes: &[u8]) -> Option<Store> {
        fn take<'a>(bytes: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
            let (head, rest) = (bytes.get(..len)?, bytes.get(len..)?);
            *bytes = rest;
            Some(head)
        }
        fn text(bytes: &mut &[u8]) -> Option<String> {
            let len = u32::from_be_bytes(take(bytes, 4)?.try_into().ok()?) as usize;
            String::from_utf8(take(bytes, len)?.to_vec()).ok()
        }
        let mut store = Store {
            applied: u64::from_be_bytes(take(&mut bytes, 8)?.try_into().ok()?),
            ..Store::default()
        };
        while !bytes.is_empty() {
            let key = text(&mut bytes)?;
            store.entries.insert(key, text(&mut bytes)?);
        }
        Some(store)
    }
}

/// One member of the store: the group member, its copy of the store, and the thread reading its events.
struct Replica {
    member: Member,
    store: ReplicatedState<Store>,
    reader: JoinHandle<String>,
}

impl Replica {
    /// Starts a thread that reads `member`'s events until they end, prints the views, and returns how
    /// they ended.
    fn new(member: Member, store: ReplicatedState<Store>) -> Replica {
        let events = member.events().clone();
        let rank = member.rank();
        let reader = std::thread::spawn(move || {
            let mut deliveries = 0;
            for event in events.iter() {
                match event {
                    Event::Deliver(_) => deliveries += 1,
                    Event::View(view) => println!("rank {rank}: view {view}"),
                    Event::Joined { position } => println!("rank {rank}: admitted at position {position}"),
                    Event::Left => return format!("left after {deliveries} deliveries"),
                    Event::Excluded { view } => return format!("excluded by view {view}"),
                    Event::Failed { reason } => return format!("failed: {reason}"),
                }
            }
            format!("events ended after {deliveries} deliveries")
        });
        Replica { member, store, reader }
    }

    /// Multicasts `command` and waits until this member delivered it (and so applied it).
    fn write(&self, command: &str) -> Result<(), tom::Error> {
        let id = self.member.multicast(command.as_bytes().to_vec())?;
        self.member.wait_delivered(id, STEP)?;
        println!("rank {}: {command:?} delivered ({id})", self.member.rank());
        Ok(())
    }

    /// Leaves the group and returns what its reader thread saw.
    fn leave(self) -> Result<String, Box<dyn std::error::Error>> {
        let rank = self.member.rank();
        self.member.leave(STEP)?;
        let seen = self.reader.join().map_err(|_| "reader thread panicked")?;
        println!("rank {rank}: left cleanly; its reader thread saw: {seen}");
        Ok(seen)
    }
}

fn main() {
    if let Err(error) = run() {
        eprintln!("kv_store: {error}");
        std::process::exit(1);
    }
    println!("kv_store: OK");
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (helper_addr, own_helper) = match (args.next().as_deref(), args.next()) {
        (Some("--helper"), Some(addr)) => (addr, None),
        (None, _) => {
            let helper = Helper::start("127.0.0.1:0", HelperConfig::new(3))?;
            (helper.local_addr().to_string(), Some(helper))
        }
        _ => return Err("usage: kv_store [--helper HOST:PORT]  (a helper for a group of 3)".into()),
    };
    let config = Config::new(&helper_addr)
        .bind_host("127.0.0.1")
        .first_port(0)
        .join_timeout_ms(STEP.as_millis() as u64);
    config.validate()?;

    // 1. Three members join; formation waits for all three, so each joins on a thread of its own.
    let joining: Vec<_> = (0..3)
        .map(|_| {
            let store = ReplicatedState::new(Store::default());
            let config = config.clone().state(&store);
            std::thread::spawn(move || Member::join(config).map(|member| Replica::new(member, store)))
        })
        .collect();
    let mut replicas = Vec::new();
    for joining in joining {
        replicas.push(joining.join().map_err(|_| "joining thread panicked")??);
    }
    replicas.sort_by_key(|replica| replica.member.rank());
    println!("joined: {:?}", replicas.iter().map(|r| &r.member).collect::<Vec<_>>());

    // 2. Each writes its own key and waits for its own message: its copy has it at once.
    for replica in &replicas {
        let rank = replica.member.rank();
        replica.write(&format!("set greeting.{rank} hello from rank {rank}"))?;
        let own = replica
            .store
            .read(|store| store.get(&format!("greeting.{rank}")).map(str::to_owned));
        if own.as_deref() != Some(&format!("hello from rank {rank}")) {
            return Err(format!("rank {rank} does not read its own write back: {own:?}").into());
        }
    }
    converge(&replicas, 3)?;

    // 3. Rank 3 leaves cleanly; its reader thread, not `leave`, takes its events.
    let third = replicas.pop().ok_or("no rank 3")?;
    let seen = third.leave()?;
    if !seen.starts_with("left") {
        return Err(format!("rank 3's events did not end with its leave: {seen}").into());
    }

    // 4. The others go on.
    replicas[0].write("set colour blue")?;
    replicas[1].write("set colour green")?;
    replicas[0].write("del greeting.3")?;
    converge(&replicas, 6)?;

    // 5. Rank 3 comes back with a new, empty store; the group hands it the store at its join point.
    let store = ReplicatedState::new(Store::default());
    let back = Member::rejoin(config.clone().state(&store), Rank(3))?;
    let position = back.join_position().ok_or("a rejoined member has a join position")?;
    back.wait_restored(STEP)?;
    let restored = store.read(Store::clone);
    println!(
        "rank 3: back as {} at position {position}; its store: {:?} ({} commands applied)",
        back.id(),
        restored.entries,
        restored.applied
    );
    if restored.applied < position || restored.get("colour").is_none() || restored.get("greeting.3").is_some() {
        return Err(format!("rank 3's restored store is not the group's at position {position}: {restored:?}").into());
    }
    replicas.push(Replica::new(back, store));

    // 6. It writes again; every copy ends up equal.
    replicas[2].write("set greeting.3 back again")?;
    let finals = converge(&replicas, 7)?;
    println!("every copy: {:?}", finals.entries);

    for replica in replicas.into_iter().rev() {
        replica.leave()?;
    }
    if let Some(helper) = own_helper {
        helper.stop();
    }
    Ok(())
}

/// Waits until every copy has applied `applied` commands and all are equal; returns the common store.
fn converge(replicas: &[Replica], applied: u64) -> Result<Store, Box<dyn std::error::Error>> {
    let deadline = Instant::now() + STEP;
    loop {
        let copies: Vec<Store> = replicas.iter().map(|r| r.store.read(Store::clone)).collect();
        if copies.iter().all(|copy| copy.applied >= applied) {
            if copies.windows(2).any(|pair| pair[0] != pair[1]) {
                return Err(format!("the copies differ: {copies:?}").into());
            }
            return Ok(copies.into_iter().next().unwrap_or_default());
        }
        if Instant::now() > deadline {
            return Err(format!("the copies did not reach {applied} commands: {copies:?}").into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
