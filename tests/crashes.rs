//! Crashes of real processes (issue 5): five `tom-member` processes multicast continuously while two of
//! them are killed with `kill -9` at random moments (the seed is printed; `TOM_TEST_SEED` replays it).
//!
//! What must hold once the load stops and the survivors are quiet: the survivors printed the same VIEW
//! lines and identical DELIVER sequences; every line written to a survivor is in them exactly once; and
//! what each killed member printed is a prefix of the survivors' sequence (uniform agreement: a message
//! delivered by anyone, even a member that died right after, is delivered by every survivor, in the same
//! place).

mod proc_support;

use std::collections::BTreeMap;
use std::time::Duration;

use proc_support::{
    assert_each_delivered_once, assert_identical, assert_no_duplicates, assert_prefix, ranks_text, Lab, Load, Rng,
};

/// A killed process's connections close at once, which is suspected at once; the timeout only matters
/// for a member that hangs, so it is short enough to keep a test quick, long enough for a loaded machine.
const FAILURE_TIMEOUT_MS: &str = "1000";

/// Each member gets one line per millisecond (or as fast as its pipe takes them, if slower).
const PACE: Duration = Duration::from_millis(1);

/// Five members, all under load, and two of them picked at random to be killed:
/// (rng, lab, ranks, victims, load).
fn five_under_load(name: &str) -> (Rng, Lab, Vec<u16>, Vec<u16>, Load) {
    let mut rng = Rng::from_env_or_clock();
    let mut lab = Lab::start(name, 5, &["--failure-timeout-ms", FAILURE_TIMEOUT_MS]);
    let ranks = lab.ranks();
    let victims = rng.pick(&ranks, 2);
    let load = Load::start(&mut lab, &ranks, PACE, None);
    (rng, lab, ranks, victims, load)
}

/// Stops the load, waits until the survivors are quiet, and checks everything the module doc promises.
fn check_after_crashes(lab: &mut Lab, load: Load, killed: &[u16]) {
    // Let the shrunken group carry load for a moment before stopping it.
    std::thread::sleep(Duration::from_millis(500));
    let written = load.finish(lab);
    let survivors: Vec<u16> = lab.ranks().into_iter().filter(|r| !killed.contains(r)).collect();
    let written_to_survivors: BTreeMap<u16, Vec<String>> = written
        .iter()
        .filter(|(rank, _)| survivors.contains(rank))
        .map(|(&r, lines)| (r, lines.clone()))
        .collect();
    let expected_at_least = written_to_survivors.values().map(Vec::len).sum();
    println!(
        "lines written per rank: {:?}",
        written
            .iter()
            .map(|(rank, lines)| (*rank, lines.len()))
            .collect::<Vec<_>>()
    );
    lab.wait_until_settled(&survivors, expected_at_least);

    let views: Vec<(u16, Vec<String>)> = survivors.iter().map(|&r| (r, lab.member(r).views())).collect();
    assert_identical(&views);
    assert_eq!(
        views[0].1.last(),
        Some(&format!("VIEW {}", ranks_text(survivors.clone()))),
        "final view"
    );

    let sequences: Vec<(u16, Vec<String>)> = survivors.iter().map(|&r| (r, lab.member(r).delivers())).collect();
    assert_identical(&sequences);
    let sequence = &sequences[0].1;
    assert_no_duplicates(sequence);
    assert_each_delivered_once(sequence, &written_to_survivors);
    for &rank in killed {
        let printed = lab.member(rank).delivers();
        println!(
            "killed rank {rank} had printed {} of the survivors' {} deliveries",
            printed.len(),
            sequence.len()
        );
        assert_prefix(&printed, sequence, &format!("killed rank {rank}'s deliveries"));
        assert_prefix(
            &lab.member(rank).views(),
            &views[0].1,
            &format!("killed rank {rank}'s views"),
        );
    }
}

#[test]
fn two_members_killed_one_after_the_other_under_load_leave_survivors_agreeing() {
    let (mut rng, mut lab, ranks, victims, load) = five_under_load("killed_one_after_the_other");

    let mut alive = ranks.clone();
    for &victim in &victims {
        let pause = rng.millis(200, 1_500);
        println!("kill -9 rank {victim} after {pause:?} more");
        std::thread::sleep(pause);
        lab.member_mut(victim).kill9();
        alive.retain(|&r| r != victim);
        // The next crash comes only after this one's view change completed everywhere.
        lab.wait_for_view(&alive, &alive);
    }
    check_after_crashes(&mut lab, load, &victims);
    let expected_views = [
        format!("VIEW {}", ranks_text(ranks.clone())),
        format!(
            "VIEW {}",
            ranks_text(ranks.iter().copied().filter(|&r| r != victims[0]))
        ),
        format!("VIEW {}", ranks_text(alive.clone())),
    ];
    assert_eq!(
        lab.member(alive[0]).views(),
        expected_views,
        "one view change per crash"
    );
}

#[test]
fn two_members_killed_at_the_same_moment_under_load_leave_survivors_agreeing() {
    let (mut rng, mut lab, ranks, victims, load) = five_under_load("killed_together");

    let pause = rng.millis(200, 1_500);
    println!("kill -9 ranks {victims:?} together after {pause:?}");
    std::thread::sleep(pause);
    lab.kill9_together(&victims);
    check_after_crashes(&mut lab, load, &victims);
    // One view change may remove both, or two may follow each other: either way each view is a subset of
    // the one before.
    let survivor = ranks
        .iter()
        .copied()
        .find(|r| !victims.contains(r))
        .expect("a survivor");
    let views = lab.member(survivor).views();
    let view_ranks: Vec<Vec<u16>> = views
        .iter()
        .map(|line| {
            line["VIEW ".len()..]
                .split(',')
                .map(|r| r.parse().expect("rank"))
                .collect()
        })
        .collect();
    assert!(view_ranks.len() <= 3, "at most one view change per crash: {views:?}");
    assert!(
        view_ranks
            .windows(2)
            .all(|pair| pair[1].iter().all(|r| pair[0].contains(r))),
        "{views:?}"
    );
}
