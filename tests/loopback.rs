//! The real runtime on 127.0.0.1: members as threads of this process, real TCP connections, real
//! reader, writer and heartbeat threads. Every member multicasts at once; all must deliver identical,
//! complete sequences. Also: a member that stops is excluded and the others go on; shutdown while
//! peers are still sending never hangs.
//!
//! Timing is never asserted; deadlines only bound how long a broken build can hang the suite.

mod net_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use net_support::{form_group, start_group_with, start_helper, within};
use tom::registry::RegistryServer;
use tom::{Config, Delivery, Event, Member, Rank, ReplicatedState};

/// Forms a group of `size` members on loopback and starts the runtime on each.
fn start_group(size: u16, failure_timeout_ms: u64) -> Vec<Member> {
    start_group_with_helper(size, failure_timeout_ms).1
}

fn member_config(helper: Option<&RegistryServer>, failure_timeout_ms: u64) -> Config {
    let config = match helper {
        Some(helper) => Config::new(helper.local_addr()),
        None => Config::without_helper(),
    };
    config
        .bind_host("127.0.0.1")
        .advertised_host("127.0.0.1")
        .first_port(0)
        .failure_timeout_ms(failure_timeout_ms)
}

/// Like [`start_group`], keeping the helper running (a rejoining member asks it for the group).
fn start_group_with_helper(size: u16, failure_timeout_ms: u64) -> (RegistryServer, Vec<Member>) {
    start_group_with(size, |helper| {
        Config::new(helper)
            .bind_host("127.0.0.1")
            .advertised_host("127.0.0.1")
            .first_port(0)
            .failure_timeout_ms(failure_timeout_ms)
    })
}

/// Waits until `member` reports a view with exactly `ranks`, returning the deliveries seen meanwhile.
fn wait_for_view(member: &Member, ranks: &str, deadline: Instant) -> Vec<Delivery> {
    let mut delivered = Vec::new();
    loop {
        match member
            .events()
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(Event::View(view)) if view.to_string() == ranks => return delivered,
            Ok(Event::Deliver(delivery)) => delivered.push(delivery),
            Ok(_) => {}
            Err(_) => panic!("member {} never installed view {ranks}", member.rank()),
        }
    }
}

/// Collects deliveries from `member` until `count` arrived (or the deadline passes).
fn collect(member: &Member, count: usize, deadline: Instant) -> Vec<Delivery> {
    let mut delivered = Vec::new();
    while delivered.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match member.events().recv_timeout(left) {
            Ok(Event::Deliver(delivery)) => delivered.push(delivery),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    delivered
}

/// Collects from every member at once: an application that stops reading one member's events slows
/// the whole group (flow control), so a test must not read them one member after the other.
fn collect_all(members: &[Member], count: usize, deadline: Instant) -> Vec<Vec<Delivery>> {
    std::thread::scope(|scope| {
        let readers: Vec<_> = members
            .iter()
            .map(|m| scope.spawn(move || collect(m, count, deadline)))
            .collect();
        readers.into_iter().map(|r| r.join().expect("reader")).collect()
    })
}

fn everyone_multicasts_at_once(size: u16, per_member: usize) {
    let members = start_group(size, 10_000);
    let deadline = Instant::now() + Duration::from_secs(120);
    std::thread::scope(|scope| {
        for member in &members {
            scope.spawn(move || {
                for k in 0..per_member {
                    member
                        .multicast(format!("{}-{k}", member.rank()).into_bytes())
                        .expect("multicast");
                }
            });
        }
        let total = size as usize * per_member;
        let sequences = collect_all(&members, total, deadline);
        for (member, sequence) in members.iter().zip(&sequences) {
            assert_eq!(
                sequence.len(),
                total,
                "member {} delivered {} of {total}",
                member.rank(),
                sequence.len()
            );
            assert_eq!(
                sequence,
                &sequences[0],
                "member {} disagrees with member 1",
                member.rank()
            );
        }
        let distinct: BTreeSet<&[u8]> = sequences[0].iter().map(|d| d.payload.as_bytes()).collect();
        assert_eq!(distinct.len(), total, "every message exactly once");
        let positions: Vec<u64> = sequences[0].iter().map(|d| d.position).collect();
        assert_eq!(positions, (1..=total as u64).collect::<Vec<_>>());
    });
    within(Duration::from_secs(30), "shutdown", move || {
        members.iter().for_each(Member::shutdown)
    });
}

#[test]
fn three_members_each_multicasting_2000_at_once_deliver_identical_sequences() {
    everyone_multicasts_at_once(3, 2_000);
}

#[test]
fn five_members_each_multicasting_2000_at_once_deliver_identical_sequences() {
    everyone_multicasts_at_once(5, 2_000);
}

#[test]
fn shutdown_while_peers_are_still_sending_never_hangs() {
    let members: Vec<std::sync::Arc<Member>> = start_group(3, 10_000).into_iter().map(std::sync::Arc::new).collect();
    let senders: Vec<_> = members
        .iter()
        .map(|member| {
            let member = std::sync::Arc::clone(member);
            std::thread::spawn(move || {
                // Sends (and reads its deliveries) until the member is shut down: the error ends the loop.
                while member.multicast(b"load".to_vec()).is_ok() {
                    while member.events().try_recv().is_ok() {}
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let first = std::sync::Arc::clone(&members[0]);
    within(Duration::from_secs(20), "shutdown under load", move || first.shutdown());
    std::thread::sleep(Duration::from_millis(300));
    within(
        Duration::from_secs(20),
        "shutdown of the others, still sending",
        move || {
            members.iter().for_each(|m| m.shutdown());
            for sender in senders {
                sender.join().expect("sender");
            }
        },
    );
}

#[test]
fn a_member_that_stops_is_excluded_and_the_others_go_on() {
    let members = start_group(3, 10_000);
    let mut members: Vec<Member> = members;
    let third = members.pop().unwrap();
    within(Duration::from_secs(20), "shutdown", move || third.shutdown());
    let deadline = Instant::now() + Duration::from_secs(60);
    for member in &members {
        wait_for_view(member, "1,2", deadline);
    }
    for member in &members {
        member
            .multicast(format!("after from {}", member.rank()).into_bytes())
            .unwrap();
    }
    let sequences: Vec<Vec<Delivery>> = members.iter().map(|m| collect(m, 2, deadline)).collect();
    assert_eq!(sequences[0].len(), 2);
    assert_eq!(sequences[0], sequences[1]);
    within(Duration::from_secs(20), "shutdown", move || {
        members.iter().for_each(Member::shutdown)
    });
}

/// Sends `count` messages from each member and returns every member's deliveries of them.
fn exchange(members: &[Member], tag: &str, count: usize, deadline: Instant) -> Vec<Vec<Delivery>> {
    for member in members {
        for k in 0..count {
            member
                .multicast(format!("{tag} {k} from {}", member.rank()).into_bytes())
                .unwrap();
        }
    }
    collect_all(members, members.len() * count, deadline)
}

/// Crashes the last member of `members` and waits until the others installed a view without it.
fn crash_last(members: &mut Vec<Member>, survivors_view: &str, deadline: Instant) {
    let last = members.pop().unwrap();
    within(Duration::from_secs(20), "shutdown", move || last.shutdown());
    for member in members.iter() {
        wait_for_view(member, survivors_view, deadline);
    }
}

#[test]
fn a_crashed_member_rejoins_through_the_helper_and_then_through_a_peer() {
    let (helper, mut members) = start_group_with_helper(3, 10_000);
    let deadline = Instant::now() + Duration::from_secs(90);
    let before = exchange(&members, "before", 10, deadline);
    assert_eq!(before[0], before[2]);

    // Rank 3 crashes; it comes back through the helper.
    crash_last(&mut members, "1,2", deadline);
    let back = Member::rejoin(member_config(Some(&helper), 10_000).join_timeout_ms(30_000), Rank(3))
        .expect("rejoin through the helper");
    assert_eq!(
        back.join_position(),
        Some(30),
        "the group delivered 30 messages before the join"
    );
    // The events of a rejoined member start with its join position.
    assert_eq!(
        back.events().recv_timeout(Duration::from_secs(10)),
        Ok(Event::Joined { position: 30 })
    );
    members.push(back);
    for member in &members {
        wait_for_view(member, "1,2,3", deadline);
    }
    let after = exchange(&members, "after", 10, deadline);
    assert_eq!(after[0], after[1]);
    assert_eq!(
        after[0], after[2],
        "the returning member delivers exactly the group's order"
    );
    assert_eq!(after[2][0].position, 31);

    // The helper goes away; rank 3 crashes again and comes back through rank 1.
    helper.stop();
    crash_last(&mut members, "1,2", deadline);
    let peer = members[0].local_addr().to_string();
    let back = Member::rejoin(member_config(None, 10_000).peer(peer).join_timeout_ms(30_000), Rank(3))
        .expect("rejoin through a peer");
    assert_eq!(back.join_position(), Some(60));
    members.push(back);
    for member in &members {
        wait_for_view(member, "1,2,3", deadline);
    }
    let again = exchange(&members, "again", 5, deadline);
    assert_eq!(again[0], again[2]);
    within(Duration::from_secs(30), "shutdown", move || {
        members.iter().for_each(Member::shutdown)
    });
}

#[test]
fn a_rank_that_is_still_alive_cannot_rejoin() {
    let (helper, members) = start_group_with_helper(3, 10_000);
    let error = Member::rejoin(member_config(Some(&helper), 10_000).join_timeout_ms(2_000), Rank(2))
        .expect_err("rank 2 is alive");
    assert!(error.to_string().contains("alive"), "clear reason: {error}");
    within(Duration::from_secs(30), "shutdown", move || {
        members.iter().for_each(Member::shutdown)
    });
}

/// The application state of the state-transfer test: how many messages were applied, and a running
/// checksum of their payloads in order (so a wrong order or a gap changes it); its snapshot is padded
/// with `padding` bytes of a known pattern, so that a large state travels in several chunks and a chunk
/// lost, repeated or misplaced shows.
#[derive(Default)]
struct Digest {
    applied: u64,
    checksum: u64,
    padding: usize,
}

fn padding_byte(i: usize) -> u8 {
    (i % 251) as u8
}

impl tom::Replicated for Digest {
    fn apply(&mut self, delivery: &Delivery) {
        self.applied += 1;
        for byte in delivery.payload.as_bytes() {
            self.checksum = self.checksum.wrapping_mul(31).wrapping_add(u64::from(*byte));
        }
    }
    fn snapshot(&self) -> Vec<u8> {
        let mut bytes = [self.applied.to_be_bytes(), self.checksum.to_be_bytes()].concat();
        bytes.extend((0..self.padding).map(padding_byte));
        bytes
    }
    fn restore(&mut self, snapshot: &[u8]) {
        let word = |i: usize| u64::from_be_bytes(snapshot[i..i + 8].try_into().expect("8 bytes"));
        self.applied = word(0);
        self.checksum = word(8);
        assert_eq!(snapshot.len(), 16 + self.padding, "the whole snapshot");
        assert!(
            snapshot[16..].iter().enumerate().all(|(i, b)| *b == padding_byte(i)),
            "the snapshot's bytes in order"
        );
    }
}

#[test]
fn a_returning_member_takes_over_the_application_state_at_its_join_position() {
    state_transfer(0);
}

/// A state larger than a frame's chunk (and than the old one-frame limit would allow comfortably):
/// it travels in several chunks and is reassembled exactly.
#[test]
fn a_state_of_several_chunks_is_handed_over_whole() {
    state_transfer(2 * tom::wire::SNAPSHOT_CHUNK_LEN_MAX + 12_345);
}

fn state_transfer(padding: usize) {
    let digest = || Digest {
        padding,
        ..Digest::default()
    };
    let helper = start_helper(3, "tom");
    let formed = form_group(helper.local_addr(), 3);
    let mut states = Vec::new();
    let mut members: Vec<Member> = formed
        .into_iter()
        .map(|formed| {
            let state = ReplicatedState::new(digest());
            let config = member_config(Some(&helper), 10_000).state(&state);
            states.push(state);
            Member::start(config, formed).expect("start member")
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    exchange(&members, "before", 20, deadline);
    crash_last(&mut members, "1,2", deadline);
    states.pop();
    // Messages ordered after the crash and before the join are part of the state handed over.
    exchange(&members, "between", 5, deadline);

    let state = ReplicatedState::new(digest());
    let config = member_config(Some(&helper), 10_000)
        .state(&state)
        .join_timeout_ms(30_000);
    let back = Member::rejoin(config, Rank(3)).expect("rejoin");
    assert_eq!(back.join_position(), Some(70));
    back.wait_restored(Duration::from_secs(30)).expect("the state arrives");
    assert_eq!(
        state.read(|digest| digest.applied),
        70,
        "the group's state at the join position"
    );
    members.push(back);
    states.push(state);
    for member in &members {
        wait_for_view(member, "1,2,3", deadline);
    }
    exchange(&members, "after", 10, deadline);
    let digests: Vec<(u64, u64)> = states
        .iter()
        .map(|s| s.read(|digest| (digest.applied, digest.checksum)))
        .collect();
    assert_eq!(digests[0].0, 100);
    assert_eq!(digests[0], digests[1]);
    assert_eq!(
        digests[0], digests[2],
        "the returning member's state equals the others'"
    );
    within(Duration::from_secs(30), "shutdown", move || {
        members.iter().for_each(Member::shutdown)
    });
}

#[test]
fn a_status_query_over_a_members_port_says_what_the_head_waits_for() {
    let members = start_group(3, 10_000);
    let report = tom::query_status(members[1].local_addr(), "tom", None, Duration::from_secs(5))
        .expect("status over the member's port");
    assert!(report.contains("member 2#1"), "{report}");
    assert!(report.contains("view 1: 1#1 2#1 3#1"), "{report}");
    assert!(report.contains("head: nothing held back"), "{report}");
    let local = members[0].status().expect("status through the library");
    assert_eq!(local.view.map(|v| v.to_string()), Some("1,2,3".to_string()));
    let wrong_group = tom::query_status(members[0].local_addr(), "other", None, Duration::from_secs(5));
    assert!(wrong_group.is_err(), "a stranger's group is refused");
    within(Duration::from_secs(30), "shutdown", move || {
        members.iter().for_each(Member::shutdown)
    });
}

#[test]
fn a_member_that_is_not_the_coordinator_leaves_cleanly() {
    let mut members = start_group(3, 10_000);
    let deadline = Instant::now() + Duration::from_secs(60);
    exchange(&members, "before", 5, deadline);
    // Rank 3 leaves: rank 1 runs the view change, and the decision must reach rank 3 before its
    // connections close, or it would take itself for cut off.
    let leaver = members.pop().unwrap();
    let left = within(Duration::from_secs(30), "leave", move || {
        leaver.leave(Duration::from_secs(20))
    });
    assert!(left.is_ok(), "a clean leave: {left:?}");
    for member in &members {
        wait_for_view(member, "1,2", deadline);
    }
    within(Duration::from_secs(30), "shutdown", move || {
        members.iter().for_each(Member::shutdown)
    });
}

/// Open file descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count())
}

#[test]
fn rejoin_connections_that_come_and_go_leave_no_sockets_behind() {
    use tom::types::{Incarnation, ProcessId};
    use tom::wire::{Frame, Hello, Purpose};
    let members = start_group(3, 10_000);
    let addr = members[0].local_addr();
    let before = open_fds();
    for _ in 0..50 {
        let stream = std::net::TcpStream::connect(addr).expect("connect");
        let hello = Frame::Hello(Hello {
            group: "tom".into(),
            rank: Rank(2),
            incarnation: Incarnation(0),
            process: ProcessId(0xbad),
            purpose: Purpose::Rejoin,
            nonce: None,
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        tom::auth::open(&stream, hello, None, deadline, "member 1").expect("hello");
        let welcome = tom::runtime::net::read_frame_before(&stream, deadline, tom::wire::HANDSHAKE_LEN_MAX);
        assert!(matches!(welcome, Ok(Frame::Welcome)), "{welcome:?}");
    }
    // Every connection closed on our side: the member closes its ends (and its copies of them) too.
    let deadline = Instant::now() + Duration::from_secs(30);
    while open_fds() > before + 5 {
        assert!(
            Instant::now() < deadline,
            "{} descriptors open, {before} before 50 rejoin connections came and went",
            open_fds()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    within(Duration::from_secs(30), "shutdown", move || {
        members.iter().for_each(Member::shutdown)
    });
}

#[test]
fn leave_completes_while_another_thread_reads_the_events_and_own_messages_can_be_awaited() {
    let mut members = start_group(3, 10_000);
    let leaver = members.pop().unwrap();
    let me = leaver.id();
    // Another thread takes every event, `Left` included: `leave` must still know it is done.
    let events = leaver.events().clone();
    let reader = std::thread::spawn(move || events.iter().collect::<Vec<Event>>());
    let last = leaver.multicast(b"last words".to_vec()).expect("multicast");
    assert_eq!(last.number(), 1);
    leaver
        .wait_delivered(last, Duration::from_secs(30))
        .expect("its own message is delivered");
    leaver.start_leave().expect("start the leave");
    // A message multicast once the leave began is never delivered, and waiting for it says so.
    let late = leaver.multicast(b"too late".to_vec()).expect("multicast");
    assert_eq!(late.number(), 2);
    let waited = leaver.wait_delivered(late, Duration::from_secs(30));
    assert!(matches!(waited, Err(tom::Error::Left)), "{waited:?}");
    let left = within(Duration::from_secs(30), "leave", move || {
        leaver.leave(Duration::from_secs(20))
    });
    assert!(left.is_ok(), "a clean leave, whoever read the events: {left:?}");
    let seen = reader.join().expect("reader");
    assert_eq!(
        seen.first().map(|e| matches!(e, Event::View(_))),
        Some(true),
        "{seen:?}"
    );
    assert_eq!(seen.last(), Some(&Event::Left), "{seen:?}");
    let own: Vec<&Delivery> = seen
        .iter()
        .filter_map(|event| match event {
            Event::Deliver(d) if d.origin == me => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(own.len(), 1, "{seen:?}");
    assert_eq!(own[0].payload.as_bytes(), b"last words");
    let deadline = Instant::now() + Duration::from_secs(60);
    for member in &members {
        wait_for_view(member, "1,2", deadline);
    }
    within(Duration::from_secs(30), "shutdown", move || {
        members.iter().for_each(Member::shutdown)
    });
}

#[test]
fn a_setting_that_cannot_work_is_refused_by_name_before_anything_starts() {
    let field = |result: tom::Result<Member>| match result {
        Err(tom::Error::InvalidSetting { field, .. }) => field,
        other => panic!("expected an invalid setting, got {other:?}"),
    };
    assert_eq!(field(Member::join(Config::new("127.0.0.1:9").window(0))), "window");
    assert_eq!(field(Member::join(Config::new("no port here"))), "helper");
    assert_eq!(field(Member::join(Config::new("127.0.0.1:0"))), "helper");
    assert_eq!(field(Member::join(Config::without_helper())), "helper");
    assert_eq!(
        field(Member::join(Config::new("127.0.0.1:9").failure_timeout_ms(0))),
        "failure_timeout_ms"
    );
    assert_eq!(
        field(Member::join(Config::new("127.0.0.1:9").advertised_host("0.0.0.0"))),
        "advertised_host"
    );
    assert_eq!(field(Member::rejoin(Config::without_helper(), Rank(2))), "helper");
    assert_eq!(
        field(Member::rejoin(Config::without_helper().peer("x"), Rank(2))),
        "peer"
    );
    let error = Config::new("127.0.0.1:9").join_timeout_ms(0).validate().unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid setting join_timeout_ms: 0: it must be at least 1"
    );
}

#[test]
fn a_join_gives_up_after_its_join_timeout() {
    // A helper for two members, and only one comes: formation cannot complete.
    let helper = start_helper(2, "tom");
    let lonely = Member::join(member_config(Some(&helper), 10_000).join_timeout_ms(500));
    assert!(matches!(lonely, Err(tom::Error::Timeout(_))), "{lonely:?}");
}

/// Issue 26, behaviour 5: everyone leaving at once. Each leaver's stop must send what it still owes
/// (a decision it relays) before its sockets close, or a member that waits for that decision takes
/// itself for cut off and ends excluded. Several rounds, since the race is between threads.
#[test]
fn a_group_whose_every_member_leaves_at_once_ends_with_every_member_left() {
    for round in 0..8 {
        let members = start_group(3, 2_000);
        let deadline = Instant::now() + Duration::from_secs(60);
        exchange(&members, &format!("round {round}"), 2, deadline);
        let leaving: Vec<_> = members
            .into_iter()
            .map(|member| std::thread::spawn(move || member.leave(Duration::from_secs(20))))
            .collect();
        for (i, leaver) in leaving.into_iter().enumerate() {
            let outcome = leaver.join().expect("the leaving thread");
            assert!(outcome.is_ok(), "round {round}: member {} ended {outcome:?}", i + 1);
        }
    }
}

/// An application state whose `apply` panics at the message `boom` (a bug in the application's
/// callback, which runs on the member's protocol thread).
struct PanicsAtBoom;

impl tom::Replicated for PanicsAtBoom {
    fn apply(&mut self, delivery: &Delivery) {
        assert_ne!(delivery.payload.as_bytes(), b"boom", "the application's apply fails");
    }
    fn snapshot(&self) -> Vec<u8> {
        Vec::new()
    }
    fn restore(&mut self, _: &[u8]) {}
}

/// Issue 26, behaviour 6: a dead protocol thread must never leave a member that looks alive. One
/// member's protocol thread panics: its application gets `Event::Failed` as the last event and
/// `Error::Failed` from its calls, and the group sees a crash (its connections close) and goes on
/// without it, instead of waiting for its acknowledgements while its heartbeats keep coming.
#[test]
fn a_member_whose_protocol_thread_panics_reports_it_and_the_group_sees_a_crash() {
    let helper = start_helper(3, "tom");
    let formed = form_group(helper.local_addr(), 3);
    let mut members: Vec<Member> = formed
        .into_iter()
        .enumerate()
        .map(|(i, formed)| {
            let config = member_config(Some(&helper), 60_000);
            let config = if i == 2 {
                config.state(&ReplicatedState::new(PanicsAtBoom))
            } else {
                config
            };
            Member::start(config, formed).expect("start member")
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let failing = members.remove(2);
    let survivors_view = {
        let mut ranks: Vec<u16> = members.iter().map(|m| m.rank().0).collect();
        ranks.sort_unstable();
        format!("{},{}", ranks[0], ranks[1])
    };
    members[0].multicast("boom").expect("multicast");
    let reason = loop {
        match failing
            .events()
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(Event::Failed { reason }) => break reason,
            Ok(_) => {}
            Err(error) => panic!("the failing member never reported its failure: {error:?}"),
        }
    };
    assert!(reason.contains("the application's apply fails"), "{reason}");
    assert!(
        matches!(failing.multicast("after"), Err(tom::Error::Failed { .. })),
        "a multicast after the failure names it"
    );
    // The failure timeout is a minute: only the closed connections can tell the others in time.
    for member in &members {
        wait_for_view(member, &survivors_view, deadline);
    }
    exchange(&members, "without the failed member", 3, deadline);
    within(Duration::from_secs(30), "shutdown", move || {
        failing.shutdown();
        members.iter().for_each(Member::shutdown)
    });
}
