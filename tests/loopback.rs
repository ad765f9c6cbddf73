//! The real runtime on 127.0.0.1: members as threads of this process, real TCP connections, real
//! reader, writer and heartbeat threads. Every member multicasts at once; all must deliver identical,
//! complete sequences. Also: a member that stops is excluded and the others go on; shutdown while
//! peers are still sending never hangs.
//!
//! Timing is never asserted; deadlines only bound how long a broken build can hang the suite.

mod net_support;

use std::collections::BTreeSet;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use net_support::{form_group, start_helper};
use tom::formation;
use tom::protocol::Delivery;
use tom::runtime::{Config, Event, Member};

/// Forms a group of `size` members on loopback and starts the runtime on each.
fn start_group(size: u16, failure_timeout_ms: u64) -> Vec<Member> {
    let helper = start_helper(size, "tom");
    let formed = form_group(helper.local_addr(), size);
    formed
        .into_iter()
        .map(|formed| {
            let mut config = Config::new(formation::Config::new(helper.local_addr().to_string()));
            config.failure_timeout_ms = failure_timeout_ms;
            Member::start(config, formed).expect("start member")
        })
        .collect()
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

/// Runs `work` on its own thread and fails the test if it does not finish within `limit`.
fn within<T: Send + 'static>(limit: Duration, what: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(work());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
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
        let sequences: Vec<Vec<Delivery>> = members.iter().map(|m| collect(m, total, deadline)).collect();
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
        members.into_iter().for_each(Member::shutdown)
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
    let members = start_group(3, 10_000);
    let mut members = members.into_iter();
    let first = members.next().unwrap();
    let others: Vec<Member> = members.collect();
    let senders: Vec<_> = others
        .into_iter()
        .map(|member| {
            std::thread::spawn(move || {
                // Sends until the member is excluded or shut down; the error ends the loop.
                let mut sent = 0u64;
                while member.multicast(b"load".to_vec()).is_ok() && sent < 1_000_000 {
                    sent += 1;
                    while member.events().try_recv().is_ok() {}
                }
                member
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    within(Duration::from_secs(20), "shutdown under load", move || first.shutdown());
    // The survivors lose their quorum (one of three gone is fine, but they keep sending): stop them too.
    let survivors: Vec<Member> = senders.into_iter().map(|s| s.join().expect("sender")).collect();
    within(Duration::from_secs(20), "shutdown of the survivors", move || {
        survivors.into_iter().for_each(Member::shutdown)
    });
}

#[test]
fn a_member_that_stops_is_excluded_and_the_others_go_on() {
    let members = start_group(3, 10_000);
    let mut members: Vec<Member> = members;
    let third = members.pop().unwrap();
    within(Duration::from_secs(20), "shutdown", move || third.shutdown());
    let deadline = Instant::now() + Duration::from_secs(60);
    for member in &members {
        loop {
            match member
                .events()
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(Event::View(view)) if view.to_string() == "1,2" => break,
                Ok(_) => {}
                Err(_) => panic!("member {} never installed view 1,2", member.rank()),
            }
        }
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
        members.into_iter().for_each(Member::shutdown)
    });
}
