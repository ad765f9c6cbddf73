//! `tom-member` as a program (issue 4): groups of real processes on 127.0.0.1, fed through stdin and read
//! through stdout, the way a lab uses them.
//!
//! What must hold: members fed lines at the same moment print identical DELIVER sequences holding every
//! line once; a line that is not UTF-8 is still multicast (its bytes escaped as `\xHH`); `--exit-on-eof`
//! leaves cleanly once the member's own lines are delivered; a closed stdout does not end a member.

mod proc_support;

use std::time::Duration;

use proc_support::{
    assert_each_delivered_once, assert_identical, load_line, parse_delivery, ranks_text, Lab, Load, DEADLINE,
};

#[test]
fn four_members_fed_stdin_at_once_print_identical_complete_sequences() {
    const LINES_EACH: usize = 200;
    let mut lab = Lab::start("four_at_once", 4, &[]);
    let ranks = lab.ranks();
    let written = Load::start(&mut lab, &ranks, Duration::ZERO, Some(LINES_EACH)).finish(&mut lab);
    lab.wait_until_settled(&ranks, ranks.len() * LINES_EACH);

    let sequences: Vec<(u16, Vec<String>)> = ranks.iter().map(|&r| (r, lab.member(r).delivers())).collect();
    assert_identical(&sequences);
    let sequence = &sequences[0].1;
    assert_eq!(sequence.len(), ranks.len() * LINES_EACH);
    assert_each_delivered_once(sequence, &written);
    // One view, so the total order is the stamp order: (Lamport time, origin rank) strictly increasing.
    let stamps: Vec<(u64, u16)> = sequence
        .iter()
        .map(|line| {
            parse_delivery(line)
                .map(|d| (d.lamport, d.origin))
                .expect("DELIVER line")
        })
        .collect();
    assert!(
        stamps.windows(2).all(|pair| pair[0] < pair[1]),
        "deliveries out of stamp order"
    );
    // Each member's own lines come in the order they were written (FIFO per origin).
    for &rank in &ranks {
        let own: Vec<&str> = sequence
            .iter()
            .filter_map(|line| parse_delivery(line))
            .filter(|d| d.origin == rank)
            .map(|d| d.payload)
            .collect();
        let expected: Vec<String> = (1..=LINES_EACH).map(|n| load_line(rank, n)).collect();
        assert_eq!(own, expected, "rank {rank}'s lines in writing order");
    }
}

#[test]
fn a_line_that_is_not_utf8_is_multicast_with_its_bytes_escaped() {
    let mut lab = Lab::start("not_utf8", 2, &[]);
    lab.member_mut(1).write_line(b"caf\xc3\xa9 \xff\xfe end");
    lab.member_mut(1).write_line(b"back\\slash and\x01control");
    lab.member_mut(2).write_line(b"crlf line\r");
    // The escapes of tom-member: invalid bytes and control characters as \xHH, a backslash doubled.
    let expected_from_1 = ["caf\u{e9} \\xff\\xfe end", "back\\\\slash and\\x01control"];
    for rank in [1, 2] {
        let member = lab.member(rank);
        member.wait_for_delivers(3);
        let delivers = member.delivers();
        let payloads_from = |origin: u16| -> Vec<&str> {
            delivers
                .iter()
                .filter_map(|l| parse_delivery(l))
                .filter(|d| d.origin == origin)
                .map(|d| d.payload)
                .collect()
        };
        assert_eq!(payloads_from(1), expected_from_1, "rank {rank}");
        assert_eq!(
            payloads_from(2),
            ["crlf line"],
            "rank {rank}: the line ending \\r\\n is not part of the message"
        );
    }
}

#[test]
fn exit_on_eof_leaves_once_its_own_lines_are_delivered_and_exits_0() {
    const LINES: usize = 50;
    // The member spawned first leaves at the end of its input; the others stay.
    let mut lab = Lab::start_with("exit_on_eof", 3, |spawn_index| {
        if spawn_index == 0 {
            vec!["--exit-on-eof".to_string()]
        } else {
            Vec::new()
        }
    });
    let leaver = lab
        .ranks()
        .into_iter()
        .find(|&r| lab.member(r).spawn_index == 0)
        .expect("leaver");
    let stayers: Vec<u16> = lab.ranks().into_iter().filter(|&r| r != leaver).collect();
    let leaver_lines = Load::start(&mut lab, &[leaver], Duration::ZERO, Some(LINES)).finish(&mut lab);
    lab.member_mut(leaver).close_stdin();

    assert_eq!(
        lab.member_mut(leaver).wait_exit(DEADLINE),
        Some(0),
        "a clean leave exits 0"
    );
    // It left only after its own lines were delivered: it printed every one of them before exiting.
    let leaver_delivers = lab.member(leaver).delivers();
    assert_each_delivered_once(&leaver_delivers, &leaver_lines);

    lab.wait_for_view(&stayers, &stayers);
    for &rank in &stayers {
        let views = lab.member(rank).views();
        assert_eq!(
            views,
            [
                format!("VIEW {}", ranks_text(1..=3)),
                format!("VIEW {}", ranks_text(stayers.clone()))
            ]
        );
    }
    // The group goes on without it.
    let more = Load::start(&mut lab, &stayers, Duration::ZERO, Some(20)).finish(&mut lab);
    lab.wait_until_settled(&stayers, LINES + 2 * 20);
    let sequences: Vec<(u16, Vec<String>)> = stayers.iter().map(|&r| (r, lab.member(r).delivers())).collect();
    assert_identical(&sequences);
    assert_each_delivered_once(&sequences[0].1, &leaver_lines);
    assert_each_delivered_once(&sequences[0].1, &more);
    proc_support::assert_prefix(&leaver_delivers, &sequences[0].1, "the leaver's deliveries");
}

#[test]
fn a_member_whose_stdout_is_closed_stays_in_the_group() {
    let mut lab = Lab::start("closed_stdout", 3, &[]);
    lab.member_mut(3).close_stdout_after_next_line();
    // Deliveries make rank 3 print; its reader takes one more line and drops the pipe.
    lab.member_mut(1).write_line(b"wake the printer");
    lab.member(1).wait_for_delivers(1);
    let deadline = std::time::Instant::now() + DEADLINE;
    while !lab.member(3).stdout_closed() {
        assert!(
            std::time::Instant::now() < deadline,
            "rank 3's stdout reader never ended"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Enough deliveries that rank 3 must write to the broken pipe (its buffer is 64 KiB), some of them
    // its own lines: the others receive them only if it is still a working member.
    let written = Load::start(&mut lab, &[1, 2, 3], Duration::ZERO, Some(500)).finish(&mut lab);
    lab.wait_until_settled(&[1, 2], 1 + 3 * 500);
    assert!(lab.member_mut(3).is_running(), "a closed stdout ended the member");
    assert_eq!(lab.member(1).views(), ["VIEW 1,2,3"], "rank 3 never left the view");
    let sequences: Vec<(u16, Vec<String>)> = [1, 2].iter().map(|&r| (r, lab.member(r).delivers())).collect();
    assert_identical(&sequences);
    assert_each_delivered_once(&sequences[0].1, &written);
}
