//! Unit tests of the history checker on hand-made histories: each property must be able to fail.
//!
//! A checker that never complains proves nothing, so every check gets a small bad history that breaks
//! exactly it (reorder, loss, duplicate, FIFO break, divergence after exclusion, rejoin gap, …), and a
//! good history shows that correct runs pass. The checker is compiled alone here, without the
//! simulator around it.

// Compiled alone here, without the simulator that uses the rest of its helpers.
#[path = "sim/check.rs"]
#[allow(dead_code)]
mod check;

use check::{check, payload_text, Delivered, End, Expect, LifeHistory};
use tom::types::{Incarnation, MemberId, ProcessId, Rank, View, ViewId};

/// Life `incarnation` of `rank`. A founder's process is `ProcessId(rank)`, as in [`View::initial`];
/// each later life runs in a process of its own.
fn id(rank: u16, incarnation: u64) -> MemberId {
    MemberId {
        rank: Rank(rank),
        incarnation: Incarnation(incarnation),
        process: ProcessId(u64::from(rank) + 1000 * (incarnation - 1)),
    }
}

/// A delivery of the `k`-th message of rank `rank`'s `life`-th life (incarnation `inc`) at `position`.
/// Lamport times grow with `k` so FIFO holds unless a test breaks it.
fn msg(rank: u16, life: u32, inc: u64, k: u64, position: u64) -> Delivered {
    Delivered {
        origin: id(rank, inc),
        lamport: 10 * k + rank as u64,
        payload: payload_text(rank, life, k),
        position,
    }
}

/// A founder of a 3-member group that multicast `sent` messages and delivered `deliveries`.
fn founder(rank: u16, sent: u64, deliveries: Vec<Delivered>) -> LifeHistory {
    let mut life = LifeHistory::founder(rank);
    life.views.push(View::initial(3));
    life.multicasts = (1..=sent).map(|k| payload_text(rank, 1, k)).collect();
    life.deliveries = deliveries;
    life
}

/// The one global order of the good run: 1-1-1, 2-1-1, 1-1-2, 3-1-1.
fn good_sequence() -> Vec<Delivered> {
    vec![
        msg(1, 1, 1, 1, 1),
        msg(2, 1, 1, 1, 2),
        msg(1, 1, 1, 2, 3),
        msg(3, 1, 1, 1, 4),
    ]
}

fn good_group() -> Vec<LifeHistory> {
    vec![
        founder(1, 2, good_sequence()),
        founder(2, 1, good_sequence()),
        founder(3, 1, good_sequence()),
    ]
}

fn expect_violation(lives: &[LifeHistory], expect: Expect, letter: &str) {
    match check(lives, expect) {
        Ok(()) => panic!("the checker accepted a history that breaks {letter}"),
        Err(problem) => assert!(
            problem.starts_with(letter),
            "expected a {letter} violation, got: {problem}"
        ),
    }
}

#[test]
fn a_correct_history_passes() {
    check(&good_group(), Expect::Settled).expect("a correct history");
}

#[test]
fn two_members_delivering_in_different_orders_is_caught() {
    let mut lives = good_group();
    lives[2].deliveries.swap(0, 1);
    lives[2].deliveries[0].position = 1;
    lives[2].deliveries[1].position = 2;
    expect_violation(&lives, Expect::Safety, "(a)");
}

#[test]
fn a_lost_message_is_caught_when_the_run_settled() {
    let mut lives = good_group();
    // Nobody delivers 3's message: fine for safety, a loss for validity.
    for life in &mut lives {
        life.deliveries.pop();
    }
    check(&lives, Expect::Safety).expect("a shorter order is still safe");
    expect_violation(&lives, Expect::Settled, "(d)");
}

#[test]
fn a_survivor_missing_the_tail_is_caught() {
    let mut lives = good_group();
    lives[1].deliveries.pop();
    expect_violation(&lives, Expect::Settled, "(e)");
}

#[test]
fn a_member_skipping_a_position_is_caught() {
    let mut lives = good_group();
    lives[0].deliveries.remove(1);
    expect_violation(&lives, Expect::Safety, "(g)");
}

#[test]
fn a_duplicate_delivery_is_caught() {
    let mut lives = good_group();
    let again = Delivered {
        position: 5,
        ..lives[0].deliveries[0].clone()
    };
    lives[0].deliveries.push(again);
    expect_violation(&lives, Expect::Safety, "(b)");
}

#[test]
fn a_message_nobody_multicast_is_caught() {
    let mut lives = good_group();
    for life in &mut lives {
        life.deliveries.push(msg(2, 1, 1, 7, 5));
    }
    expect_violation(&lives, Expect::Safety, "(b)");
}

#[test]
fn a_message_delivered_under_the_wrong_incarnation_is_caught() {
    let mut lives = good_group();
    for life in &mut lives {
        life.deliveries[1].origin = id(2, 4);
    }
    expect_violation(&lives, Expect::Safety, "(b)");
}

#[test]
fn a_fifo_break_is_caught() {
    // Everyone agrees, but 1's second message is ordered before its first.
    let order = vec![msg(1, 1, 1, 2, 1), msg(1, 1, 1, 1, 2), msg(2, 1, 1, 1, 3)];
    let lives = vec![
        founder(1, 2, order.clone()),
        founder(2, 1, order.clone()),
        founder(3, 0, order),
    ];
    expect_violation(&lives, Expect::Safety, "(c)");
}

#[test]
fn a_lamport_time_going_backwards_is_caught() {
    let mut order = good_sequence();
    // Below the origin's earlier message (an equal time would name that message again: integrity).
    order[2].lamport = order[0].lamport - 1;
    let lives = vec![
        founder(1, 2, order.clone()),
        founder(2, 1, order.clone()),
        founder(3, 1, order),
    ];
    expect_violation(&lives, Expect::Safety, "(c)");
}

#[test]
fn an_excluded_member_diverging_after_its_exclusion_is_caught() {
    let mut lives = good_group();
    // Member 3 was excluded after position 2, then went on with its own message at position 3.
    lives[2].end = End::Excluded;
    lives[2].deliveries.truncate(2);
    lives[2].deliveries.push(msg(3, 1, 1, 1, 3));
    expect_violation(&lives, Expect::Safety, "(a)");
}

/// The good group after member 3 crashed: the survivors moved on to view 2 without it.
fn without_member_3(lives: &mut [LifeHistory]) {
    lives[2].end = End::Crashed;
    for life in lives.iter_mut().take(2) {
        life.views.push(View {
            id: ViewId(2),
            members: vec![id(1, 1), id(2, 1)],
        });
    }
}

#[test]
fn a_crashed_member_holding_a_prefix_passes() {
    let mut lives = good_group();
    without_member_3(&mut lives);
    lives[2].deliveries.truncate(1);
    // 3's own message was delivered by the survivors before it crashed; its life is a prefix.
    check(&lives, Expect::Settled).expect("a crashed member's prefix is fine");
}

#[test]
fn a_delivery_only_a_crashed_member_made_is_caught() {
    let mut lives = good_group();
    without_member_3(&mut lives);
    lives[0].deliveries.pop();
    lives[1].deliveries.pop();
    // Uniform agreement: the dead member delivered position 4; the survivors never do.
    expect_violation(&lives, Expect::Settled, "(e)");
}

fn rejoined(joined: u64, deliveries: Vec<Delivered>) -> LifeHistory {
    let mut life = LifeHistory::joiner(3, 2);
    life.incarnation = Some(2);
    life.joined = Some(joined);
    life.views.push(View {
        id: ViewId(2),
        members: vec![id(1, 1), id(2, 1), id(3, 2)],
    });
    life.deliveries = deliveries;
    life.member_at_end = true;
    life
}

/// Rank 3's first life crashed after position 2; its second life joined at position 2.
fn group_with_rejoin(second_life: LifeHistory) -> Vec<LifeHistory> {
    let mut lives = good_group();
    lives[2].end = End::Crashed;
    lives[2].deliveries.truncate(2);
    lives[2].multicasts.clear();
    // The founders' message 4 is now 2-1-2 instead of the dead life's message.
    for life in lives.iter_mut().take(2) {
        life.deliveries[3] = msg(2, 1, 1, 2, 4);
        life.views.push(second_life.views[0].clone());
    }
    lives[1].multicasts.push(payload_text(2, 1, 2));
    lives.push(second_life);
    lives
}

#[test]
fn a_rejoined_life_with_the_exact_suffix_passes() {
    let suffix = vec![msg(1, 1, 1, 2, 3), msg(2, 1, 1, 2, 4)];
    check(&group_with_rejoin(rejoined(2, suffix)), Expect::Settled).expect("exact suffix");
}

#[test]
fn a_rejoined_life_starting_after_a_gap_is_caught() {
    let late = vec![msg(2, 1, 1, 2, 4)];
    expect_violation(&group_with_rejoin(rejoined(2, late)), Expect::Safety, "(f)");
}

#[test]
fn a_rejoined_life_redelivering_before_its_join_is_caught() {
    let early = vec![msg(2, 1, 1, 1, 2), msg(1, 1, 1, 2, 3), msg(2, 1, 1, 2, 4)];
    expect_violation(&group_with_rejoin(rejoined(2, early)), Expect::Safety, "(f)");
}

#[test]
fn two_different_views_with_one_id_are_caught() {
    let mut lives = good_group();
    lives[1].views.push(View {
        id: ViewId(2),
        members: vec![id(1, 1), id(2, 1)],
    });
    lives[2].views.push(View {
        id: ViewId(2),
        members: vec![id(2, 1), id(3, 1)],
    });
    expect_violation(&lives, Expect::Safety, "(h)");
}

#[test]
fn a_member_stuck_outside_the_final_view_is_caught() {
    let mut lives = good_group();
    lives[2].member_at_end = false;
    expect_violation(&lives, Expect::Settled, "(d)");
}
