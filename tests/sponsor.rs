//! Issue 16, behaviour 6a: a sponsor that is itself still waiting for its own snapshot. The life that
//! hands a new life its state is the lowest rank of the view that is not new itself; that can be a
//! life admitted by the view just before, whose own snapshot has not arrived yet. The state it holds
//! then is not the group's state at the join position (it has applied nothing), so it must hand the
//! newcomer the state only once its own is restored and every delivery before the newcomer's join is
//! applied to it.
//!
//! Members run as threads of this process on 127.0.0.1 with a [`Replicated`] state that counts the
//! deliveries applied and keeps a running checksum of them. The order is arranged, not hoped for: the
//! first newcomer reaches its sponsor through a relay of this test that holds back, from the sponsor's
//! first snapshot frame on, everything the sponsor sends it but heartbeats (a slow link carrying a
//! large state, with the sponsor still heard from). Only once the first newcomer installed the view
//! that makes it the sponsor of the second does the relay let the snapshot through. Which requests one
//! ballot gathers is arranged by stalling a member (see [`Stall`]); which members a returning process
//! dials, by a stand-in for the helper that passes registrations on and edits the roster a lookup gets.
//!
//! Timing is never asserted; deadlines only bound how long a broken build can hang the suite.

mod net_support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use net_support::{capture_logs, form_group, start_helper, wait_for_log, within};
use tom::registry::RegistryServer;
use tom::wire::{self, Frame};
use tom::{Config, Delivery, Event, Member, Rank, Replicated, ReplicatedState};

/// Short enough that the view change which goes on without the sponsor's promise (held back on the
/// slow link) does not take long, long enough for a loaded machine: a crash is seen at once anyway,
/// by its closed connections.
const FAILURE_TIMEOUT_MS: u64 = 3_000;

/// The application state: how many deliveries were applied, and a checksum of their payloads in order
/// (a gap, a repeat or another order changes it). With a [`Stall`], applying can be held up.
#[derive(Default)]
struct Digest {
    applied: u64,
    checksum: u64,
    stall: Option<Arc<Stall>>,
}

impl Replicated for Digest {
    fn apply(&mut self, delivery: &Delivery) {
        if let Some(stall) = &self.stall {
            stall.pass();
        }
        self.applied += 1;
        for byte in delivery.payload.as_bytes() {
            self.checksum = self.checksum.wrapping_mul(31).wrapping_add(u64::from(*byte));
        }
    }
    fn snapshot(&self) -> Vec<u8> {
        [self.applied.to_be_bytes(), self.checksum.to_be_bytes()].concat()
    }
    fn restore(&mut self, snapshot: &[u8]) {
        assert_eq!(snapshot.len(), 16, "a whole snapshot");
        let word = |i: usize| u64::from_be_bytes(snapshot[i..i + 8].try_into().expect("8 bytes"));
        self.applied = word(0);
        self.checksum = word(8);
    }
}

/// Once armed, holds the protocol thread of the member whose state it is at its next delivery, until
/// released: a member alive and heard from (its heartbeats go on, from their own thread) that answers
/// nothing for a while, so that a view change, which waits for every member it does not suspect when
/// it only admits or lets go of lives, waits for it and gathers every request that comes meanwhile.
#[derive(Default)]
struct Stall {
    state: Mutex<StallState>,
    changed: Condvar,
}

#[derive(Default)]
struct StallState {
    armed: bool,
    stalled: bool,
}

impl Stall {
    /// Never held longer than this, so that a failed test still shuts its members down.
    const LIMIT: Duration = Duration::from_secs(60);

    fn arm(&self) {
        self.state.lock().unwrap().armed = true;
    }

    /// Waits until the protocol thread is held.
    fn wait_stalled(&self, deadline: Instant) {
        let mut state = self.state.lock().unwrap();
        while !state.stalled {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the stalled member never delivered");
            state = self.changed.wait_timeout(state, left).unwrap().0;
        }
    }

    fn release(&self) {
        let mut state = self.state.lock().unwrap();
        state.armed = false;
        state.stalled = false;
        self.changed.notify_all();
    }

    /// On the protocol thread, at a delivery.
    fn pass(&self) {
        let give_up = Instant::now() + Stall::LIMIT;
        let mut state = self.state.lock().unwrap();
        if !state.armed {
            return;
        }
        state.stalled = true;
        self.changed.notify_all();
        while state.armed && Instant::now() < give_up {
            state = self.changed.wait_timeout(state, Duration::from_millis(100)).unwrap().0;
        }
    }
}

/// (deliveries applied, checksum) of a state.
fn digest(state: &ReplicatedState<Digest>) -> (u64, u64) {
    state.read(|digest| (digest.applied, digest.checksum))
}

fn member_config(helper: SocketAddr, state: &ReplicatedState<Digest>) -> Config {
    Config::new(helper)
        .bind_host("127.0.0.1")
        .advertised_host("127.0.0.1")
        .first_port(0)
        .failure_timeout_ms(FAILURE_TIMEOUT_MS)
        .state(state)
        .join_timeout_ms(60_000)
}

/// Waits until `member` reports a view with exactly `ranks`.
fn wait_for_view(member: &Member, ranks: &str, deadline: Instant) {
    loop {
        match member
            .events()
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(Event::View(view)) if view.to_string() == ranks => return,
            Ok(_) => {}
            Err(_) => panic!("member {} never reported view {ranks}", member.rank()),
        }
    }
}

/// Polls `member`'s status (answered even while its events are held back) until its installed view
/// has exactly `ranks`; returns the view's id.
fn wait_for_installed(member: &Member, ranks: &str, deadline: Instant) -> u64 {
    loop {
        let status = member.status().expect("status");
        if let Some(view) = status.view.filter(|v| v.to_string() == ranks) {
            return view.id.0;
        }
        assert!(
            Instant::now() < deadline,
            "member {} never installed view {ranks}; status:\n{}",
            member.rank(),
            member.status().expect("status")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every member multicasts `count` messages, and every member's deliveries of all of them are read
/// (all at once: a member whose events nobody reads slows the whole group).
fn exchange(members: &[&Member], tag: &str, count: usize, deadline: Instant) {
    for member in members {
        for k in 0..count {
            member
                .multicast(format!("{tag} {k} from {}", member.rank()).into_bytes())
                .expect("multicast");
        }
    }
    let total = members.len() * count;
    std::thread::scope(|scope| {
        for member in members {
            scope.spawn(move || {
                let mut delivered = 0;
                while delivered < total {
                    match member
                        .events()
                        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    {
                        Ok(Event::Deliver(_)) => delivered += 1,
                        Ok(_) => {}
                        Err(_) => panic!("member {} delivered {delivered} of {total}", member.rank()),
                    }
                }
            });
        }
    });
}

/// Shuts `member` down (a crash, for the others) within a bound.
fn crash(member: Member) {
    within(Duration::from_secs(20), "shutdown", move || member.shutdown());
}

/// A listener of this test whose connections are served by `serve` on the accepting thread, until it
/// is dropped (which also closes every connection it opened or accepted and joins its threads).
struct Service {
    addr: SocketAddr,
    shared: Arc<ServiceShared>,
    accepting: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct ServiceShared {
    stop: AtomicBool,
    /// Every socket opened for the service, shut down on drop so that blocked threads end.
    streams: Mutex<Vec<TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl ServiceShared {
    fn keep(&self, stream: &TcpStream) {
        if let Ok(clone) = stream.try_clone() {
            self.streams.lock().unwrap().push(clone);
        }
    }
}

impl Service {
    fn start(serve: impl Fn(&Arc<ServiceShared>, TcpStream) + Send + 'static) -> Service {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(ServiceShared::default());
        let serving = Arc::clone(&shared);
        let accepting = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if serving.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    serving.keep(&stream);
                    serve(&serving, stream);
                }
            }
        });
        Service {
            addr,
            shared,
            accepting: Some(accepting),
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees `stop`.
        let _ = TcpStream::connect(self.addr);
        if let Some(accepting) = self.accepting.take() {
            let _ = accepting.join();
        }
        for stream in self.shared.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for thread in self.shared.threads.lock().unwrap().drain(..) {
            let _ = thread.join();
        }
    }
}

/// A stand-in for the helper, for one returning process: it passes every registration on to the real
/// helper and its answer back, except that the roster a lookup gets (a rejoin not yet admitted) names
/// the address given in `rewrite` for each rank there, or leaves the rank out for `None`.
fn helper_rewriting(real: SocketAddr, rewrite: Vec<(Rank, Option<SocketAddr>)>) -> Service {
    Service::start(move |shared, client| {
        let timeout = Some(Duration::from_secs(10));
        let _ = client.set_read_timeout(timeout);
        let Ok(register) = wire::read_frame(&mut &client, wire::HANDSHAKE_LEN_MAX) else {
            return;
        };
        let Ok(upstream) = TcpStream::connect(real) else { return };
        shared.keep(&upstream);
        let _ = upstream.set_read_timeout(timeout);
        let mut bytes = Vec::new();
        wire::encode(&register, &mut bytes);
        if (&upstream).write_all(&bytes).is_err() {
            return;
        }
        let Ok(mut answer) = wire::read_frame(&mut &upstream, wire::HANDSHAKE_LEN_MAX) else {
            return;
        };
        let lookup = matches!(&register, Frame::Register(r) if r.admitted.is_none());
        if let (true, Frame::Roster(roster)) = (lookup, &mut answer) {
            roster
                .members
                .retain_mut(|entry| match rewrite.iter().find(|(rank, _)| *rank == entry.rank) {
                    None => true,
                    Some((_, None)) => false,
                    Some((_, Some(addr))) => {
                        entry.host = addr.ip().to_string();
                        entry.port = addr.port();
                        true
                    }
                });
        }
        let mut bytes = Vec::new();
        wire::encode(&answer, &mut bytes);
        let _ = (&client).write_all(&bytes);
    })
}

/// What the slow link holds back.
#[derive(Default)]
struct Holding {
    /// Once set, nothing more is held and what was is sent on.
    released: bool,
    /// Frames held back, as bytes, for the connection with that index in `downs`.
    held: Vec<(usize, Vec<u8>)>,
    /// Snapshot frames among them.
    snapshots: usize,
    /// The connections towards the dialler, by index; written only under this lock.
    downs: Vec<TcpStream>,
    /// Which connections hold back (from their first snapshot frame on).
    holding: Vec<bool>,
}

/// A relay in front of a member: whoever dials it reaches the member. What the dialler sends goes
/// through at once; what the member sends back goes through frame by frame, except that from its first
/// snapshot frame on every frame but heartbeats is held back, in order, until [`SlowLink::release`].
struct SlowLink {
    state: Arc<(Mutex<Holding>, Condvar)>,
    service: Service,
}

impl SlowLink {
    fn start(target: SocketAddr) -> SlowLink {
        let state: Arc<(Mutex<Holding>, Condvar)> = Arc::default();
        let relaying = Arc::clone(&state);
        let service = Service::start(move |shared, down| {
            let Ok(up) = TcpStream::connect(target) else { return };
            shared.keep(&up);
            let (Ok(mut down_reading), Ok(mut up_writing), Ok(down_writing)) =
                (down.try_clone(), up.try_clone(), down.try_clone())
            else {
                return;
            };
            let index = {
                let mut holding = relaying.0.lock().unwrap();
                holding.downs.push(down_writing);
                holding.holding.push(false);
                holding.downs.len() - 1
            };
            let forth = std::thread::spawn(move || {
                let _ = std::io::copy(&mut down_reading, &mut up_writing);
                let _ = up_writing.shutdown(Shutdown::Both);
            });
            let state = Arc::clone(&relaying);
            let back = std::thread::spawn(move || relay_back(&up, index, &state));
            shared.threads.lock().unwrap().extend([forth, back]);
        });
        SlowLink { state, service }
    }

    fn addr(&self) -> SocketAddr {
        self.service.addr
    }

    /// Waits until a snapshot frame is held back.
    fn wait_until_a_snapshot_is_held(&self, deadline: Instant) {
        let (lock, changed) = &*self.state;
        let mut holding = lock.lock().unwrap();
        while holding.snapshots == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the sponsor never sent the first newcomer a snapshot");
            holding = changed.wait_timeout(holding, left).unwrap().0;
        }
    }

    fn snapshots_held(&self) -> usize {
        self.state.0.lock().unwrap().snapshots
    }

    /// Sends on everything held back, in order, and holds nothing from now on.
    fn release(&self) {
        let mut holding = self.state.0.lock().unwrap();
        holding.released = true;
        let held = std::mem::take(&mut holding.held);
        for (index, bytes) in held {
            let _ = (&holding.downs[index]).write_all(&bytes);
        }
        holding.snapshots = 0;
    }
}

/// Relays frames from the member (`up`) to the dialler, holding back as [`SlowLink`] says.
fn relay_back(up: &TcpStream, index: usize, state: &(Mutex<Holding>, Condvar)) {
    let mut reader = std::io::BufReader::new(up);
    loop {
        let mut prefix = [0u8; wire::LENGTH_PREFIX_LEN];
        if reader.read_exact(&mut prefix).is_err() {
            break;
        }
        let len = u32::from_be_bytes(prefix) as usize;
        let mut bytes = prefix.to_vec();
        bytes.resize(wire::LENGTH_PREFIX_LEN + len, 0);
        if reader.read_exact(&mut bytes[wire::LENGTH_PREFIX_LEN..]).is_err() {
            break;
        }
        let frame = wire::decode(&bytes[wire::LENGTH_PREFIX_LEN..]);
        let is_snapshot = matches!(frame, Ok(Frame::Snapshot(_)));
        let is_heartbeat = matches!(frame, Ok(Frame::Heartbeat));
        let (lock, changed) = state;
        let mut holding = lock.lock().unwrap();
        if !holding.released && !is_heartbeat && (is_snapshot || holding.holding[index]) {
            holding.holding[index] = true;
            holding.snapshots += usize::from(is_snapshot);
            holding.held.push((index, bytes));
            changed.notify_all();
            continue;
        }
        if (&holding.downs[index]).write_all(&bytes).is_err() {
            break;
        }
    }
    let holding = state.0.lock().unwrap();
    let _ = holding.downs[index].shutdown(Shutdown::Both);
}

/// The address a returning process of `rank` listens on, from its log line.
fn rejoiner_addr(rank: u16) -> SocketAddr {
    let line = wait_for_log(&[
        "listening on ",
        &format!("looking for the group to rejoin as rank {rank}"),
    ]);
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .expect("listening on ADDR;");
    addr.parse().expect("a socket address")
}

/// Waits until the helper's roster names, for each of `ranks`, the life of incarnation `incarnation`.
fn wait_for_roster(helper: &RegistryServer, ranks: &[u16], incarnation: u64, deadline: Instant) {
    while !ranks.iter().all(|&rank| {
        helper
            .members()
            .iter()
            .any(|e| e.rank == Rank(rank) && e.incarnation.0 == incarnation)
    }) {
        assert!(
            Instant::now() < deadline,
            "the helper never recorded ranks {ranks:?} as life {incarnation}: {:?}",
            helper.members()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Five members; 1, 2 and 5 crash, leaving 3 and 4. Ranks 1 and 2 come back and are admitted by one
/// view `v` = 1,2,3,4 (rank 4 is stalled while both requests reach rank 3, the coordinator, so one
/// ballot admits both), whose sponsor is rank 3; rank 3's snapshot for rank 2 is held back on their
/// link. Then rank 1 leaves while rank 5 comes back, in one ballot again (rank 4 stalled): rank 1, the
/// coordinator of `v`, installs `w` = 2,3,4,5 with every promise in (rank 3's reached it on its own
/// link), and the sponsor of `w` is rank 2, whose own snapshot has still not arrived. Only then is the
/// link released.
///
/// Why so many steps: the coordinator of `v` is its lowest rank, so a newcomer of `v` that sponsors the
/// next view is its coordinator unless a lower newcomer of `v` runs the next ballot and leaves by it;
/// and a coordinator could not go on without its sponsor's promise, which comes after the snapshot on
/// the same link.
///
/// What must hold: rank 5's restored state is the group's state at its join position (what rank 3
/// holds then: nothing is multicast meanwhile), not the empty state rank 2 had when `w` was installed;
/// and afterwards all four agree, message for message.
#[test]
fn a_sponsor_still_waiting_for_its_own_snapshot_hands_the_newcomer_the_state_at_its_join_position() {
    capture_logs();
    let deadline = Instant::now() + Duration::from_secs(120);
    let helper = start_helper(5, "tom");
    let formed = form_group(helper.local_addr(), 5);
    let stall = Arc::new(Stall::default());
    let mut states: BTreeMap<u16, ReplicatedState<Digest>> = BTreeMap::new();
    let mut members: BTreeMap<u16, Member> = BTreeMap::new();
    for formed in formed {
        let rank = formed.rank.0;
        let state = ReplicatedState::new(Digest {
            stall: (rank == 4).then(|| Arc::clone(&stall)),
            ..Digest::default()
        });
        let member = Member::start(member_config(helper.local_addr(), &state), formed).expect("start member");
        states.insert(rank, state);
        members.insert(rank, member);
    }
    exchange(&members.values().collect::<Vec<_>>(), "formed", 10, deadline);
    for (rank, survivors) in [(1, "2,3,4,5"), (2, "3,4,5"), (5, "3,4")] {
        crash(members.remove(&rank).expect("a running member"));
        for member in members.values() {
            wait_for_view(member, survivors, deadline);
        }
    }
    exchange(&members.values().collect::<Vec<_>>(), "between", 5, deadline);

    // Ranks 1 and 2 come back while rank 4 is stalled; rank 2 reaches rank 3 through the slow link.
    stall.arm();
    members[&4].multicast(b"stall 1".to_vec()).expect("multicast");
    stall.wait_stalled(deadline);
    // The returning processes do not dial rank 4 while it is stalled (they dial it once admitted, at
    // the address the helper names): their lookups leave it out.
    let without_4 = helper_rewriting(helper.local_addr(), vec![(Rank(4), None)]);
    let a_state = ReplicatedState::new(Digest::default());
    let a_config = member_config(without_4.addr, &a_state);
    let a = std::thread::spawn(move || Member::rejoin(a_config, Rank(1)));
    let a_addr = rejoiner_addr(1);
    wait_for_log(&["rank 1: connected to ranks"]);
    let link = SlowLink::start(members[&3].local_addr());
    let redirecting = helper_rewriting(
        helper.local_addr(),
        vec![(Rank(1), Some(a_addr)), (Rank(3), Some(link.addr())), (Rank(4), None)],
    );
    let x_state = ReplicatedState::new(Digest::default());
    let x_config = member_config(redirecting.addr, &x_state);
    let x = std::thread::spawn(move || Member::rejoin(x_config, Rank(2)));
    wait_for_log(&["member 3#1: rank 1 asks to rejoin"]);
    wait_for_log(&["member 3#1: rank 2 asks to rejoin"]);
    stall.release();
    let a = a.join().expect("rejoin thread").expect("rank 1 rejoins");
    let x = x.join().expect("rejoin thread").expect("rank 2 rejoins");
    assert_eq!(
        a.join_position(),
        x.join_position(),
        "ranks 1 and 2 join at one position"
    );
    link.wait_until_a_snapshot_is_held(deadline);
    let v = wait_for_installed(&x, "1,2,3,4", deadline);
    assert_eq!(
        (
            a.status().expect("status").me.incarnation.0,
            x.status().expect("status").me.incarnation.0
        ),
        (v, v),
        "ranks 1 and 2 admitted by one view"
    );
    for member in [&a, &members[&3], &members[&4]] {
        wait_for_view(member, "1,2,3,4", deadline);
    }
    // Rank 5's new process must find both new lives in the helper's roster (each registers once
    // admitted), to be linked to them.
    wait_for_roster(&helper, &[1, 2], v, deadline);

    // Rank 1 leaves and rank 5 comes back while rank 4 is stalled.
    stall.arm();
    members[&4].multicast(b"stall 2".to_vec()).expect("multicast");
    stall.wait_stalled(deadline);
    a.start_leave().expect("rank 1 leaves");
    let y_state = ReplicatedState::new(Digest::default());
    let y_config = member_config(without_4.addr, &y_state);
    let y = std::thread::spawn(move || Member::rejoin(y_config, Rank(5)));
    wait_for_log(&[&format!("member 1#{v}: rank 5 asks to rejoin")]);
    stall.release();
    let w = wait_for_installed(&x, "2,3,4,5", deadline);
    assert_eq!(w, v + 1, "the view right after the one that admitted rank 2");
    assert!(
        link.snapshots_held() > 0,
        "the scenario: rank 2 installed view {w}, which makes it the sponsor of rank 5, before its own \
         snapshot arrived"
    );
    link.release();

    let y = y.join().expect("rejoin thread").expect("rank 5 rejoins");
    let y_position = y.join_position().expect("rank 5's join position");
    loop {
        match a
            .events()
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(Event::Left) => break,
            Ok(_) => {}
            Err(_) => panic!("rank 1 never left"),
        }
    }
    let four = [&x, &members[&3], &members[&4], &y];
    for member in four {
        wait_for_view(member, "2,3,4,5", deadline);
    }
    // Nothing was multicast since view w: rank 3's state is the group's at rank 5's join position.
    let at_join = digest(&states[&3]);
    assert_eq!(
        at_join.0, y_position,
        "rank 3 applied every delivery before rank 5's join"
    );
    assert_eq!(
        digest(&y_state),
        at_join,
        "rank 5's restored state (deliveries applied, checksum) is the group's state at its join position \
         {y_position}"
    );
    assert_eq!(
        digest(&x_state),
        at_join,
        "rank 2's restored state, with what it delivered since"
    );

    exchange(&four, "after", 5, deadline);
    let digests: Vec<(u64, u64)> = [&x_state, &states[&3], &states[&4], &y_state]
        .into_iter()
        .map(digest)
        .collect();
    assert_eq!(digests[0].0, y_position + 20);
    assert!(
        digests.iter().all(|d| *d == digests[0]),
        "every member's state (2, 3, 4, 5): {digests:?}"
    );

    let mut everyone: Vec<Member> = members.into_values().collect();
    everyone.extend([a, x, y]);
    within(Duration::from_secs(30), "shutdown", move || {
        everyone.iter().for_each(Member::shutdown)
    });
    drop(redirecting);
    drop(without_4);
    drop(link);
    helper.stop();
}
