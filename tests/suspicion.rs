//! False suspicion and lost quorum with real processes (issue 6).
//!
//! A timeout cannot tell a crashed member from a paused one, so the group must stay one history whatever
//! the detector concludes: a member SIGSTOPped past the failure timeout is excluded while the others go
//! on, and after SIGCONT it stops (exit 3) within a bound, having printed nothing the group did not
//! deliver in the same place. A member that loses its quorum at once (its peers vanish together) must
//! stop rather than go on alone: it cannot tell "they all crashed" from "I am cut off". The quorum rule's
//! tie-break is checked both ways: exactly half of a view goes on only if it holds the lowest rank.
//!
//! Random choices (victim, moments) come from a printed seed; `TOM_TEST_SEED` replays it.

mod proc_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proc_support::{
    assert_each_delivered_once, assert_identical, assert_no_duplicates, assert_prefix, ranks_text, Lab, Load, Rng,
    EXIT_EXCLUDED,
};

const FAILURE_TIMEOUT_MS: &str = "500";

/// How long a member stays stopped: well past the failure timeout.
const STOPPED_FOR: Duration = Duration::from_secs(2);

/// How long an excluded or minority member may take to stop once it runs again. Generous: it only
/// bounds a hang, a loaded machine may be slow.
const STOP_BOUND: Duration = Duration::from_secs(20);

const PACE: Duration = Duration::from_millis(1);

#[test]
fn a_member_stopped_past_the_timeout_is_excluded_and_exits_3_after_sigcont() {
    let mut rng = Rng::from_env_or_clock();
    let mut lab = Lab::start("stopped_member", 3, &["--failure-timeout-ms", FAILURE_TIMEOUT_MS]);
    let ranks = lab.ranks();
    let stopped = rng.pick(&ranks, 1)[0];
    let others: Vec<u16> = ranks.iter().copied().filter(|&r| r != stopped).collect();
    let load = Load::start(&mut lab, &ranks, PACE, None);

    let pause = rng.millis(200, 1_000);
    println!("kill -STOP rank {stopped} after {pause:?}");
    std::thread::sleep(pause);
    lab.member(stopped).signal("STOP");
    let stopped_at = Instant::now();
    lab.wait_for_view(&others, &others);
    println!(
        "the others installed a view without it after {:?}",
        stopped_at.elapsed()
    );
    // They keep delivering without it.
    let delivered_at_view = lab.member(others[0]).deliver_count();
    for &rank in &others {
        lab.member(rank).wait_for_delivers(delivered_at_view + 200);
    }
    std::thread::sleep(STOPPED_FOR.saturating_sub(stopped_at.elapsed()));

    lab.member(stopped).signal("CONT");
    let continued_at = Instant::now();
    assert_eq!(
        lab.member_mut(stopped).wait_exit(STOP_BOUND),
        Some(EXIT_EXCLUDED),
        "an excluded member exits 3"
    );
    println!("after SIGCONT it exited within {:?}", continued_at.elapsed());

    let written = load.finish(&mut lab);
    let written_to_others: BTreeMap<u16, Vec<String>> =
        written.into_iter().filter(|(rank, _)| others.contains(rank)).collect();
    lab.wait_until_settled(&others, written_to_others.values().map(Vec::len).sum());
    let views: Vec<(u16, Vec<String>)> = others.iter().map(|&r| (r, lab.member(r).views())).collect();
    assert_identical(&views);
    assert_eq!(
        views[0].1,
        [
            format!("VIEW {}", ranks_text(ranks.clone())),
            format!("VIEW {}", ranks_text(others.clone()))
        ]
    );
    let sequences: Vec<(u16, Vec<String>)> = others.iter().map(|&r| (r, lab.member(r).delivers())).collect();
    assert_identical(&sequences);
    assert_no_duplicates(&sequences[0].1);
    assert_each_delivered_once(&sequences[0].1, &written_to_others);
    // Nothing divergent: what the stopped member printed, before and after SIGCONT, is the group's order.
    let printed = lab.member(stopped).delivers();
    println!(
        "the stopped member printed {} of the group's {} deliveries",
        printed.len(),
        sequences[0].1.len()
    );
    assert_prefix(&printed, &sequences[0].1, "the stopped member's deliveries");
    assert_prefix(&lab.member(stopped).views(), &views[0].1, "the stopped member's views");
}

/// Kills `victims` with `kill -9` together while every member multicasts, then checks that each member of
/// `must_stop` exits 3 within the bound, that each of `go_on` keeps delivering, and that every sequence
/// printed is a prefix of one another (one history).
fn kill_together_under_load(rng: &mut Rng, name: &str, size: u16, victims: &[u16], must_stop: &[u16], go_on: &[u16]) {
    let mut lab = Lab::start(name, size, &["--failure-timeout-ms", FAILURE_TIMEOUT_MS]);
    let ranks = lab.ranks();
    let load = Load::start(&mut lab, &ranks, PACE, None);
    let pause = rng.millis(200, 1_000);
    println!("kill -9 ranks {victims:?} together after {pause:?}");
    std::thread::sleep(pause);
    lab.kill9_together(victims);
    let killed_at = Instant::now();
    for &rank in must_stop {
        assert_eq!(
            lab.member_mut(rank).wait_exit(STOP_BOUND),
            Some(EXIT_EXCLUDED),
            "rank {rank} lost its quorum"
        );
        println!("rank {rank} stopped {:?} after the kill", killed_at.elapsed());
    }
    if !go_on.is_empty() {
        lab.wait_for_view(go_on, go_on);
        let delivered_at_view = lab.member(go_on[0]).deliver_count();
        for &rank in go_on {
            lab.member(rank).wait_for_delivers(delivered_at_view + 200);
        }
    }
    let written = load.finish(&mut lab);
    if !go_on.is_empty() {
        let written_to_live: BTreeMap<u16, Vec<String>> =
            written.into_iter().filter(|(rank, _)| go_on.contains(rank)).collect();
        lab.wait_until_settled(go_on, written_to_live.values().map(Vec::len).sum());
        let sequences: Vec<(u16, Vec<String>)> = go_on.iter().map(|&r| (r, lab.member(r).delivers())).collect();
        assert_identical(&sequences);
        assert_each_delivered_once(&sequences[0].1, &written_to_live);
    }
    // One history: of any two members' printed sequences, one is a prefix of the other.
    let mut printed: Vec<(u16, Vec<String>)> = ranks.iter().map(|&r| (r, lab.member(r).delivers())).collect();
    printed.sort_by_key(|(_, sequence)| sequence.len());
    let longest = printed.last().expect("members").1.clone();
    for (rank, sequence) in &printed {
        assert_no_duplicates(sequence);
        assert_prefix(sequence, &longest, &format!("rank {rank}'s deliveries"));
    }
}

#[test]
fn a_member_whose_peers_all_vanish_at_once_exits_3_instead_of_going_on_alone() {
    let mut rng = Rng::from_env_or_clock();
    let survivor = rng.range(1, 4) as u16;
    let victims: Vec<u16> = (1..=3).filter(|&r| r != survivor).collect();
    println!("rank {survivor} is left alone");
    kill_together_under_load(&mut rng, "peers_vanish", 3, &victims, &[survivor], &[]);
}

#[test]
fn exactly_half_of_the_view_without_the_lowest_rank_stops() {
    kill_together_under_load(
        &mut Rng::from_env_or_clock(),
        "half_without_lowest",
        4,
        &[1, 2],
        &[3, 4],
        &[],
    );
}

#[test]
fn exactly_half_of_the_view_with_the_lowest_rank_goes_on() {
    kill_together_under_load(
        &mut Rng::from_env_or_clock(),
        "half_with_lowest",
        4,
        &[3, 4],
        &[],
        &[1, 2],
    );
}
