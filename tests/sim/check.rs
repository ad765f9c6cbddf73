//! The history checker: judges what every life of every rank delivered, after (or during) a run.
//!
//! It sees only recorded histories ([`LifeHistory`]), never a node's internals, so it checks the
//! contract a user of the library relies on, not how the core happens to meet it. The properties:
//!
//! - **(a) one order**: every life's deliveries sit at global positions, and no two lives disagree on
//!   what is at a position; together the lives cover positions `1..=max` without a hole;
//! - **(b) integrity**: no life delivers a message twice, no message sits at two positions, and every
//!   delivered message was multicast by the life its payload names (rank and incarnation agree);
//! - **(c) FIFO per origin life**: the messages of one origin life appear in the order it multicast
//!   them, with no gap, and with strictly increasing Lamport times;
//! - **(d) validity** (settled runs only): every message accepted by a life that is a member at the end,
//!   or that left cleanly, is in the global order, and every member at the end reached its end;
//! - **(e) uniform agreement** (settled runs only): whatever any life delivered (crashed and excluded
//!   ones included) every member at the end delivered too, unless it precedes that member's join;
//! - **(f) exact suffix for joiners**: a rejoined life's first delivery is at its `Joined` position + 1;
//! - **(g) contiguity**: positions are consecutive within a life, starting right after its start;
//! - **(h) one view per id**: two lives that installed a view with the same id saw the same members,
//!   and every life saw view ids grow.
//!
//! Payloads are self-describing, `"{rank}-{life}-{k}"` (the `k`-th accepted multicast of the `life`-th
//! life of `rank`), which is how a delivery is traced back to the multicast that caused it.
//! The first counterexample found is returned as a sentence naming the property letter.
//!
//! (a), the Lamport side of (b) and (c), and (f) are judged by the one history checker of the project,
//! `bin/check/history.rs`, the same code `tom-check` runs on real processes' logs: the lives are handed to
//! it as logs. What only the simulator knows (what each life multicast, its views, how it ended) is
//! judged here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use tom::types::{MemberId, View};

#[path = "../../bin/check/history.rs"]
#[allow(dead_code)]
mod history;

/// One delivery as a life saw it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Delivered {
    /// The life the core says multicast it.
    pub origin: MemberId,
    /// Its Lamport time.
    pub lamport: u64,
    /// The payload, as text.
    pub payload: String,
    /// Its global position.
    pub position: u64,
}

/// How a life ended (or not) by the time the checker runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum End {
    /// Still running.
    Alive,
    /// Killed by the simulator.
    Crashed,
    /// Told by the core it was excluded (or stopped for lack of a quorum); its process then exits.
    Excluded,
    /// Left cleanly.
    Left,
}

/// Everything recorded about one life of one rank.
#[derive(Clone, Debug, Hash)]
pub struct LifeHistory {
    /// The rank.
    pub rank: u16,
    /// Which life of the rank (1 = the founding process, 2 = the first restart, …).
    pub life: u32,
    /// The incarnation the group gave this life, once known (founders: 1).
    pub incarnation: Option<u64>,
    /// `Some(position)` once a joiner printed `Joined`; founders start at 0 without it.
    pub joined: Option<u64>,
    /// Every view it installed, in order.
    pub views: Vec<View>,
    /// Every delivery, in order.
    pub deliveries: Vec<Delivered>,
    /// Payloads of the multicasts the core accepted from this life, in order.
    pub multicasts: Vec<String>,
    /// How it ended.
    pub end: End,
    /// True if, when the checker runs, it is a member of an installed view (not joining, not inert).
    pub member_at_end: bool,
}

impl LifeHistory {
    /// A founding member's empty history.
    pub fn founder(rank: u16) -> LifeHistory {
        LifeHistory {
            rank,
            life: 1,
            incarnation: Some(1),
            joined: None,
            views: Vec::new(),
            deliveries: Vec::new(),
            multicasts: Vec::new(),
            end: End::Alive,
            member_at_end: true,
        }
    }

    /// A restarted process's empty history.
    pub fn joiner(rank: u16, life: u32) -> LifeHistory {
        LifeHistory {
            incarnation: None,
            life,
            member_at_end: false,
            ..LifeHistory::founder(rank)
        }
    }

    /// True for a life that started with a `Node::rejoin`.
    pub fn is_joiner(&self) -> bool {
        self.life > 1
    }

    /// The position before its first delivery, if it is allowed to deliver at all.
    fn start_position(&self) -> Option<u64> {
        if self.is_joiner() {
            self.joined
        } else {
            Some(0)
        }
    }

    /// The last position it delivered (its start if it delivered nothing).
    pub fn last_position(&self) -> u64 {
        self.deliveries
            .last()
            .map_or(self.start_position().unwrap_or(0), |d| d.position)
    }

    /// A survivor: running and a member at the end.
    pub fn is_survivor(&self) -> bool {
        self.end == End::Alive && self.member_at_end
    }
}

impl fmt::Display for LifeHistory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.life == 1 {
            write!(f, "{}", self.rank)
        } else {
            write!(f, "{}~{}", self.rank, self.life)
        }
    }
}

/// What the run promises about the end state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Expect {
    /// Only safety: the group may have stopped (lost its quorum) or the run may be cut short.
    Safety,
    /// The run settled: validity and uniform agreement are due too.
    Settled,
}

/// The payload of the `k`-th multicast (1-based) of the `life`-th life of `rank`.
pub fn payload_text(rank: u16, life: u32, k: u64) -> String {
    format!("{rank}-{life}-{k}")
}

/// The same payload made `pad` bytes longer (big-payload runs): `rank-life-k-....`.
pub fn padded_payload_text(rank: u16, life: u32, k: u64, pad: usize) -> String {
    let mut text = payload_text(rank, life, k);
    if pad > 0 {
        text.push('-');
        text.extend(std::iter::repeat('.').take(pad));
    }
    text
}

/// `(rank, life, k)` from a payload made by [`payload_text`] or [`padded_payload_text`].
pub fn parse_payload(text: &str) -> Option<(u16, u32, u64)> {
    let mut parts = text.split('-');
    let rank = parts.next()?.parse().ok()?;
    let life = parts.next()?.parse().ok()?;
    let k = parts.next()?.parse().ok()?;
    let padding_only = |p: &str| p.bytes().all(|b| b == b'.');
    match parts.next() {
        None => Some((rank, life, k)),
        Some(pad) if padding_only(pad) && parts.next().is_none() => Some((rank, life, k)),
        Some(_) => None,
    }
}

/// A payload as a story shows it: big padding folded.
pub fn short_payload(text: &str) -> String {
    match text.find("-.") {
        Some(at) => format!("{}+{}B", &text[..at], text.len() - at),
        None => text.to_string(),
    }
}

/// Runs every check; the first counterexample wins. The properties the logs of real processes show too
/// (one order, no holes, integrity, FIFO per origin rank, exact suffixes) are judged by the one history
/// checker that `tom-check` runs (`bin/check/history.rs`), on these lives seen as logs; what only the
/// simulator records (what each life multicast, its views, how it ended) is judged here.
pub fn check(lives: &[LifeHistory], expect: Expect) -> Result<(), String> {
    for life in lives {
        check_contiguous(life)?;
    }
    let size = lives.iter().map(|l| l.rank).max().unwrap_or(0);
    let logs: Vec<Vec<history::LogLife>> = lives.iter().filter_map(|l| as_log(l, size)).map(|l| vec![l]).collect();
    history::check(&logs).map_err(|violation| {
        let letter = match violation.property {
            history::Property::Agreement | history::Property::NoHoles => "(a)",
            history::Property::Integrity | history::Property::Validity => "(b)",
            history::Property::Fifo => "(c)",
            history::Property::Rejoin => "(f)",
        };
        format!("{letter} as tom-check judges it: {violation}")
    })?;
    let global = global_order(lives);
    check_integrity(lives, &global)?;
    check_fifo(lives, &global)?;
    check_views(lives)?;
    if expect == Expect::Settled {
        check_settled(lives, &global)?;
    }
    Ok(())
}

/// A life as `tom-check` would read its log: its rank, the group's size, its join position, its views
/// and deliveries (none for a joiner that was never admitted).
fn as_log(life: &LifeHistory, size: u16) -> Option<history::LogLife> {
    let start = life.start_position()?;
    Some(history::LogLife {
        name: life.to_string(),
        rank: life.rank,
        size,
        state: life.is_joiner().then_some(start),
        views: life.views.iter().map(|v| v.ranks().map(|r| r.0).collect()).collect(),
        deliveries: life
            .deliveries
            .iter()
            .enumerate()
            .map(|(i, d)| history::Logged {
                line: i + 1,
                origin: d.origin.rank.0,
                lamport: d.lamport,
                payload: d.payload.clone(),
            })
            .collect(),
    })
}

/// (g) and (f): consecutive positions, starting right after the life's start.
fn check_contiguous(life: &LifeHistory) -> Result<(), String> {
    let Some(first) = life.deliveries.first() else {
        return Ok(());
    };
    let Some(start) = life.start_position() else {
        return Err(format!(
            "(f) life {life} delivered {:?} at position {} before it printed Joined",
            first.payload, first.position
        ));
    };
    if first.position != start + 1 {
        let which = if life.is_joiner() { "(f)" } else { "(g)" };
        return Err(format!(
            "{which} life {life} starts at position {start} but its first delivery {:?} is at {}",
            first.payload, first.position
        ));
    }
    for pair in life.deliveries.windows(2) {
        if pair[1].position != pair[0].position + 1 {
            return Err(format!(
                "(g) life {life} jumps from position {} ({:?}) to {} ({:?})",
                pair[0].position, pair[0].payload, pair[1].position, pair[1].payload
            ));
        }
    }
    Ok(())
}

/// The global order, position by position (the history checker made sure the lives agree on it and
/// leave no hole), with a life that delivered each.
fn global_order(lives: &[LifeHistory]) -> Vec<(Delivered, String)> {
    let mut at: BTreeMap<u64, (&Delivered, &LifeHistory)> = BTreeMap::new();
    for life in lives {
        for d in &life.deliveries {
            at.entry(d.position).or_insert((d, life));
        }
    }
    at.into_values().map(|(d, who)| (d.clone(), who.to_string())).collect()
}

fn find_life(lives: &[LifeHistory], rank: u16, life: u32) -> Option<&LifeHistory> {
    lives.iter().find(|l| l.rank == rank && l.life == life)
}

/// (b): every message at one position only, multicast by the life it names.
fn check_integrity(lives: &[LifeHistory], global: &[(Delivered, String)]) -> Result<(), String> {
    let mut positions: BTreeMap<&str, u64> = BTreeMap::new();
    for (d, who) in global {
        if let Some(earlier) = positions.insert(&d.payload, d.position) {
            return Err(format!(
                "(b) {:?} sits at two positions of the global order: {earlier} and {} (seen by {who})",
                d.payload, d.position
            ));
        }
        let Some((rank, life_no, _)) = parse_payload(&d.payload) else {
            return Err(format!(
                "(b) position {} holds {:?}, which nobody multicast (seen by {who})",
                d.position, d.payload
            ));
        };
        let origin = find_life(lives, rank, life_no).filter(|l| l.multicasts.contains(&d.payload));
        let Some(origin) = origin else {
            return Err(format!(
                "(b) position {} holds {:?}, which life {rank}~{life_no} never multicast (seen by {who})",
                d.position, d.payload
            ));
        };
        let incarnation_agrees = origin.incarnation.map_or(true, |inc| inc == d.origin.incarnation.0);
        if d.origin.rank.0 != rank || !incarnation_agrees {
            return Err(format!(
                "(b) position {} holds {:?} of life {origin} (incarnation {:?}) but is delivered as from {} \
                 (seen by {who})",
                d.position, d.payload, origin.incarnation, d.origin
            ));
        }
    }
    Ok(())
}

/// (c): each origin life's messages in multicast order, gap-free, Lamport times growing.
fn check_fifo(lives: &[LifeHistory], global: &[(Delivered, String)]) -> Result<(), String> {
    // (rank, life) -> (how many of its messages seen so far, last lamport)
    let mut progress: BTreeMap<(u16, u32), (usize, u64)> = BTreeMap::new();
    for (d, who) in global {
        let (rank, life_no, _) = parse_payload(&d.payload).expect("checked by integrity");
        let origin = find_life(lives, rank, life_no).expect("checked by integrity");
        let (count, last_lamport) = progress.entry((rank, life_no)).or_insert((0, 0));
        let expected = &origin.multicasts[*count];
        if *expected != d.payload {
            return Err(format!(
                "(c) position {} holds {:?} but life {origin}'s next message in multicast order is {:?} \
                 (seen by {who})",
                d.position, d.payload, expected
            ));
        }
        if *count > 0 && d.lamport <= *last_lamport {
            return Err(format!(
                "(c) position {} holds {:?} with lamport {} after an earlier message of life {origin} \
                 with lamport {}",
                d.position, d.payload, d.lamport, last_lamport
            ));
        }
        *count += 1;
        *last_lamport = d.lamport;
    }
    Ok(())
}

/// (h): a view id means the same members to everyone who installed it.
fn check_views(lives: &[LifeHistory]) -> Result<(), String> {
    let mut by_id: BTreeMap<u64, (&View, &LifeHistory)> = BTreeMap::new();
    for life in lives {
        for pair in life.views.windows(2) {
            if pair[1].id <= pair[0].id {
                return Err(format!(
                    "(h) life {life} installed view {} after view {}",
                    pair[1].id, pair[0].id
                ));
            }
        }
        for view in &life.views {
            match by_id.get(&view.id.0) {
                Some((other, who)) if *other != view => {
                    return Err(format!(
                        "(h) view {}: life {who} installed [{}] but life {life} installed [{}]",
                        view.id,
                        members(other),
                        members(view)
                    ));
                }
                Some(_) => {}
                None => {
                    by_id.insert(view.id.0, (view, life));
                }
            }
        }
    }
    Ok(())
}

fn members(view: &View) -> String {
    let lives: Vec<String> = view.members.iter().map(|m| m.to_string()).collect();
    lives.join(",")
}

/// (d) and (e), plus "the group ended in one view": only for runs that settled.
fn check_settled(lives: &[LifeHistory], global: &[(Delivered, String)]) -> Result<(), String> {
    let survivors: Vec<&LifeHistory> = lives.iter().filter(|l| l.is_survivor()).collect();
    if let Some(stuck) = lives.iter().find(|l| l.end == End::Alive && !l.member_at_end) {
        return Err(format!(
            "(d) life {stuck} is running but is no member at the end (still joining or stuck)"
        ));
    }
    let Some(first) = survivors.first() else {
        return Ok(());
    };
    let final_view = first.views.last();
    for life in &survivors {
        if life.views.last() != final_view {
            return Err(format!(
                "(d) the survivors ended in different views: {first} in {:?}, {life} in {:?}",
                final_view.map(members),
                life.views.last().map(members)
            ));
        }
    }
    if let Some(view) = final_view {
        let listed: BTreeSet<u16> = view.ranks().map(|r| r.0).collect();
        let alive: BTreeSet<u16> = survivors.iter().map(|l| l.rank).collect();
        if listed != alive {
            return Err(format!(
                "(d) the final view {} lists [{}] but the members running at the end are {alive:?}",
                view.id,
                members(view)
            ));
        }
    }
    let max = global.len() as u64;
    for life in &survivors {
        if life.last_position() > max {
            return Err(format!(
                "(a) life {life} starts at position {} but no life delivered beyond {max}",
                life.last_position()
            ));
        }
        if life.last_position() < max {
            let (missing, who) = &global[life.last_position() as usize];
            return Err(format!(
                "(e) life {life} ended at position {} but the group's order goes to {max}: it misses {:?} \
                 at position {} (delivered by {who})",
                life.last_position(),
                missing.payload,
                missing.position
            ));
        }
    }
    let delivered: BTreeSet<&str> = global.iter().map(|(d, _)| d.payload.as_str()).collect();
    for life in lives {
        if !(life.is_survivor() || life.end == End::Left) {
            continue;
        }
        if let Some(lost) = life.multicasts.iter().find(|m| !delivered.contains(m.as_str())) {
            return Err(format!(
                "(d) life {life} ({:?}) multicast {lost:?} but it was never delivered",
                life.end
            ));
        }
    }
    Ok(())
}
