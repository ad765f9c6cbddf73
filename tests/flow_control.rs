//! Flow control on the real runtime (127.0.0.1): `multicast()` blocks while too many of the member's
//! own messages are undelivered, and is released by progress, by shutdown and by a view change; an
//! application that does not keep up with its deliveries slows the group down instead of growing a
//! queue. Amounts are measured in messages queued, never in time.

mod net_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use net_support::start_group_with;
use tom::{Config, Error, Event, Member};

const WINDOW: usize = 8;
const QUEUE_MAX: usize = 16;

fn start_group(size: u16) -> Vec<Arc<Member>> {
    let (_helper, members) = start_group_with(size, |helper| {
        Config::new(helper)
            .window(WINDOW)
            .delivery_queue_max(QUEUE_MAX)
            .failure_timeout_ms(30_000)
    });
    members.into_iter().map(Arc::new).collect()
}

/// Multicasts with `try_multicast` until the window is full; returns how many went out.
fn fill_window(member: &Member) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = 0;
    loop {
        match member.try_multicast(format!("m{sent}").into_bytes()) {
            Ok(_) => sent += 1,
            Err(Error::WouldBlock) => return sent,
            Err(other) => panic!("unexpected {other}"),
        }
        assert!(Instant::now() < deadline && sent < 100_000, "the window never filled");
    }
}

/// Takes every event waiting at `member` right now; returns how many deliveries there were.
fn drain(member: &Member) -> usize {
    let mut delivered = 0;
    while let Ok(event) = member.events().try_recv() {
        if matches!(event, Event::Deliver(_)) {
            delivered += 1;
        }
    }
    delivered
}

#[test]
fn a_slow_consumer_slows_the_group_instead_of_growing_a_queue() {
    let members = start_group(3);
    let slow = Arc::clone(&members[2]);
    // Members 1 and 2 multicast as much as flow control lets them while member 3's application reads
    // nothing. They must block: member 3 stops acknowledging once its queue is full.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sent = [0usize; 2];
    let mut delivered = [0usize; 3];
    let mut stalled_rounds = 0;
    while stalled_rounds < 20 {
        assert!(Instant::now() < deadline, "the senders never blocked");
        let before = sent;
        for (i, member) in members[..2].iter().enumerate() {
            sent[i] += fill_window(member);
            delivered[i] += drain(member);
        }
        stalled_rounds = if sent == before { stalled_rounds + 1 } else { 0 };
        std::thread::sleep(Duration::from_millis(20));
    }
    let waiting = slow.events().len();
    let held = slow.status().expect("status").held;
    // Bounded by the queue limit plus what one round of the protocol loop can deliver, and by the
    // others' windows.
    assert!(
        waiting <= QUEUE_MAX + 3 * WINDOW + 2,
        "{waiting} events queued at the slow member"
    );
    assert!(held <= 3 * WINDOW, "{held} messages held back at the slow member");
    assert!(
        sent.iter().sum::<usize>() < 10 * (QUEUE_MAX + 3 * WINDOW),
        "the senders were slowed: sent {sent:?}"
    );

    // Once the application reads again, everything is delivered everywhere.
    let total = sent.iter().sum::<usize>();
    while delivered.iter().any(|d| *d < total) {
        assert!(Instant::now() < deadline, "delivered {delivered:?} of {total}");
        for (i, member) in members.iter().enumerate() {
            delivered[i] += drain(member);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    members.iter().for_each(|m| m.shutdown());
}

#[test]
fn a_blocked_multicast_resumes_when_deliveries_progress_and_shutdown_releases_it() {
    let members = start_group(2);
    let deadline = Instant::now() + Duration::from_secs(60);
    // Member 2's application reads nothing: member 1's window fills. Member 1's own application keeps
    // reading: were its queue to fill first, it would stop acknowledging, and member 2's queue would
    // never grow past its limit.
    let mut sent = 0;
    loop {
        sent += fill_window(&members[0]);
        drain(&members[0]);
        if members[1].events().len() > QUEUE_MAX {
            break;
        }
        assert!(Instant::now() < deadline, "member 2's queue never filled");
        std::thread::sleep(Duration::from_millis(20));
    }
    sent += fill_window(&members[0]);
    let blocked = {
        let member = Arc::clone(&members[0]);
        std::thread::spawn(move || member.multicast(b"blocked".to_vec()))
    };
    std::thread::sleep(Duration::from_millis(200));
    assert!(!blocked.is_finished(), "multicast blocks while the window is full");
    // Deliveries progress: the blocked multicast goes through.
    while !blocked.is_finished() {
        assert!(Instant::now() < deadline, "the blocked multicast never resumed");
        drain(&members[1]);
        drain(&members[0]);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(blocked.join().unwrap().is_ok());
    assert!(sent > 0);

    // Block again, then shut the member down from here: the blocked call returns an error.
    while members[1].events().len() <= QUEUE_MAX {
        fill_window(&members[0]);
        drain(&members[0]);
        assert!(Instant::now() < deadline, "member 2's queue never filled again");
        std::thread::sleep(Duration::from_millis(20));
    }
    fill_window(&members[0]);
    let blocked = {
        let member = Arc::clone(&members[0]);
        std::thread::spawn(move || member.multicast(b"blocked again".to_vec()))
    };
    std::thread::sleep(Duration::from_millis(200));
    assert!(!blocked.is_finished());
    members[0].shutdown();
    assert!(matches!(blocked.join().unwrap(), Err(Error::ShutDown)));
    members[1].shutdown();
}

#[test]
fn a_view_change_releases_a_blocked_multicast() {
    let members = start_group(3);
    let deadline = Instant::now() + Duration::from_secs(60);
    // Member 3 reads nothing, so member 1's own messages stay undelivered and its window fills.
    while members[2].events().len() <= QUEUE_MAX {
        fill_window(&members[0]);
        drain(&members[1]);
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    fill_window(&members[0]);
    let blocked = {
        let member = Arc::clone(&members[0]);
        std::thread::spawn(move || member.multicast(b"waits for the view change".to_vec()))
    };
    std::thread::sleep(Duration::from_millis(200));
    assert!(!blocked.is_finished());
    // Member 3 crashes: the view change delivers what it held back, and the window opens.
    members[2].shutdown();
    while !blocked.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the view change did not release the blocked multicast"
        );
        drain(&members[0]);
        drain(&members[1]);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(blocked.join().unwrap().is_ok());
    members[..2].iter().for_each(|m| m.shutdown());
}
