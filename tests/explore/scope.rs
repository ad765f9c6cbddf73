//! What one exhaustive exploration covers: the group's size and the budget of every kind of choice.
//!
//! A scope is written as a short text so that a counterexample's replay command can carry it:
//! `n3 m1 w3 c1 k0 b0 s0 r0 l0 t2 d60` (comma or space separated, any order, missing fields default).
//! Each budget bounds how often the search may take that kind of choice on one path; deliveries,
//! the detector's reports of a process that is gone, a restarted process's dials and the exit of a
//! stopped process are not budgeted (each is finite: they only consume what the budgeted choices made).
//! The world's shape takes more fields, written only when set: the helper (`h1` gone, `h2` goes
//! away once), the ports of restarted processes (`p1` the rank's own, `p2` the lowest free), the ranks
//! faults may touch (`a23`), the ranks that multicast (`o3`, instead of the lowest `w`) and the ranks
//! that left before the search starts (`g3`); and withdrawals of false suspicions (`e1`). The `o` and
//! `g` fields let
//! a search reach a rare shape (two ranks coming back into a small group, one of them while its old
//! process runs) whole, where over every rank and from the full group it would not finish.

use std::fmt;

use crate::sim::PortMode;

/// The budgets of one exploration (see the module documentation for the text form).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    /// `n`: founders (2 or 3 in practice).
    pub members: u16,
    /// `m`: multicasts per life.
    pub multicasts_per_life: u32,
    /// `w`: how many ranks multicast (the lowest ones; default every rank).
    pub writers: u16,
    /// `o`: the ranks that multicast, as digits (`o3`: only rank 3), instead of the lowest `w`.
    pub origins: Option<u32>,
    /// `c`: crashes of a process (each branches: what it had in flight is lost, or all still arrives).
    pub crashes: u32,
    /// `k`: power cuts (a process goes silent: no end of file, only detectors notice).
    pub power_cuts: u32,
    /// `b`: single connections broken (nothing in flight on it arrives, both ends read an end of file).
    pub breaks: u32,
    /// `s`: false suspicions (a detector reports a life whose process still runs).
    pub false_suspicions: u32,
    /// `e`: withdrawals (a detector that falsely suspected a life hears it again, and its member
    /// withdraws the suspicion; the detector may then report the life again, at the cost of another `s`).
    pub withdrawals: u32,
    /// `r`: restarts (a new process asks for a rank, whether or not the rank's old process still runs).
    pub restarts: u32,
    /// `j`: late greetings (a restarted process's dial whose greeting comes after its handshake
    /// deadline: the acceptor took the connection, the joiner abandons it unread).
    pub late_greetings: u32,
    /// `l`: members that ask to leave.
    pub leaves: u32,
    /// `t`: ticks (each a view-change timeout at one member, and a step of its endpoint's clock).
    pub ticks: u32,
    /// `d`: the longest path searched; a deeper state is reported, not expanded.
    pub depth_max: u32,
    /// `f1`: flushes are choices of their own (inputs batched in one drain) instead of every driver
    /// flushing after each step.
    pub separate_flushes: bool,
    /// `x1`: state transfer on (a returning process gets the application's state from its sponsor).
    pub state_transfer: bool,
    /// `h`: the helper (0: up throughout; 1: gone once the group formed, so a restarted process looks
    /// the group up through a member, each member a branch; 2: it goes away at a moment of the
    /// search's choosing, once).
    pub helper: u8,
    /// `p`: which port a restarted process binds (0: one no life had; 1: its rank's founder port when
    /// free, so an old address may reach a newer process of that rank; 2: the lowest free one).
    pub ports: PortMode,
    /// `a`: the ranks that may crash, lose power or restart, as digits (`a23`: ranks 2 and 3; default
    /// every rank). The scope then covers every schedule of faults at those ranks only: a search of a
    /// rare shape that would not finish over every rank.
    pub faulty_ranks: u32,
    /// `g`: the ranks that left before the search starts, as digits (`g3`: the group is 1 and 2, and
    /// rank 3 may come back as a new process). A smaller world to start from: what a long run reaches
    /// only after several view changes.
    pub gone_at_start: u32,
}

impl Scope {
    /// The scopes `make test` searches (about 10 s together on the 2-core CI machine): two members
    /// with one multicast each and one crash; three members with one multicast each and no fault;
    /// three members where rank 1 multicasts once, with one crash, one false suspicion (which its
    /// detector may withdraw, hearing the life again) or one broken connection; and, with flushes as choices of their own (several inputs in one drain),
    /// two members both leaving and three with a crash.
    pub fn test_scopes() -> Vec<Scope> {
        [
            "n2 m1 c1 t1",
            "n3 m1",
            "n3 w1 m1 c1",
            "n3 w1 m1 s1 e1",
            "n3 w1 m1 b1",
            "n2 m1 l2 f1",
            "n3 w1 m1 c1 f1",
        ]
        .into_iter()
        .map(|text| Scope::parse(text).expect("valid"))
        .collect()
    }

    /// `make explore`'s default scopes (about 6 minutes together here): the test scopes, then
    /// - leaves: two members both leaving; three members all leaving; rank 1 multicasting while two
    ///   leave, or while one leaves and one crashes;
    /// - timeouts and silence: three members with a crash or a power cut and a view-change timeout;
    ///   two members with two multicasts each and a crash; three members with a false suspicion that
    ///   may be withdrawn and a view-change timeout (the proposer's wait for the withdrawal);
    /// - rejoins: two members with a crash and a restart (two timeouts), with state transfer, with a
    ///   crash and two restarts (two processes for one rank), with a restart while the old process
    ///   runs and is falsely suspected, is silent (a power cut) or lost a connection; three members
    ///   with a crash and a restart;
    /// - rare shapes, whole: a group of one whose others left, both coming back with the helper gone
    ///   (each looks the group up through the member); a group of two whose third left, coming back
    ///   while any one connection may break; a group of one whose others left, both coming back while
    ///   any one connection may break;
    /// - drains of several inputs (flushes as choices): two members with two multicasts each and a
    ///   crash, three all leaving, two with a crash and a restart.
    pub fn default_scopes() -> Vec<Scope> {
        let mut scopes = Scope::test_scopes();
        let more = [
            "n2 m1 l2 t1",
            "n3 m0 l3",
            "n3 w1 m1 l2",
            "n3 w1 m1 l1 c1",
            "n3 w1 m1 c1 t1",
            "n3 w1 m1 k1 t1",
            "n2 m2 c1 t1",
            "n3 m0 s1 e1 t1",
            "n2 m1 c1 r1 t2",
            "n2 m1 c1 r1 t1 x1",
            "n2 m0 c1 r2 t1",
            "n2 m0 r2 t1",
            "n2 m1 s1 r1 t1 e1",
            "n2 m1 k1 r1 t1",
            "n2 m1 b1 r1 t1",
            "n3 m0 c1 r1",
            "n2 m2 c1 t1 f1",
            "n3 m0 l3 f1",
            "n2 m1 c1 r1 t1 f1",
            "n3 m0 g23 r2 h1 a23",
            "n3 m0 g3 r1 b1 a3",
            "n3 m0 g23 r2 b1 a23",
        ];
        scopes.extend(more.into_iter().map(|text| Scope::parse(text).expect("valid")));
        scopes
    }

    /// Parses the text form; every field is a letter followed by a number.
    pub fn parse(text: &str) -> Result<Scope, String> {
        let mut scope = Scope {
            members: 3,
            multicasts_per_life: 1,
            writers: u16::MAX,
            origins: None,
            crashes: 0,
            power_cuts: 0,
            breaks: 0,
            false_suspicions: 0,
            withdrawals: 0,
            restarts: 0,
            late_greetings: 0,
            leaves: 0,
            ticks: 0,
            depth_max: 80,
            separate_flushes: false,
            state_transfer: false,
            helper: 0,
            ports: PortMode::Fresh,
            faulty_ranks: u32::MAX,
            gone_at_start: 0,
        };
        for field in text.split([',', ' ']).filter(|f| !f.is_empty()) {
            let (key, value) = field.split_at(1);
            let n: u32 = value
                .parse()
                .map_err(|_| format!("scope field {field:?}: a letter and a number, as in c1"))?;
            match key {
                "n" => scope.members = u16::try_from(n).map_err(|_| format!("n{n}: too many members"))?,
                "m" => scope.multicasts_per_life = n,
                "w" => scope.writers = u16::try_from(n).map_err(|_| format!("w{n}: too many writers"))?,
                "c" => scope.crashes = n,
                "k" => scope.power_cuts = n,
                "b" => scope.breaks = n,
                "s" => scope.false_suspicions = n,
                "e" => scope.withdrawals = n,
                "r" => scope.restarts = n,
                "j" => scope.late_greetings = n,
                "l" => scope.leaves = n,
                "t" => scope.ticks = n,
                "d" => scope.depth_max = n,
                "f" => scope.separate_flushes = n != 0,
                "x" => scope.state_transfer = n != 0,
                "h" if n <= 2 => scope.helper = n as u8,
                "h" => return Err(format!("h{n}: the helper is 0 (up), 1 (gone) or 2 (goes away)")),
                "p" => {
                    scope.ports = match n {
                        0 => PortMode::Fresh,
                        1 => PortMode::SameAsRank,
                        2 => PortMode::LowestFree,
                        _ => return Err(format!("p{n}: ports are 0 (fresh), 1 (the rank's) or 2 (lowest free)")),
                    }
                }
                "a" => scope.faulty_ranks = rank_set(value),
                "g" => scope.gone_at_start = rank_set(value),
                "o" => scope.origins = Some(rank_set(value)),
                _ => {
                    return Err(format!(
                        "scope field {field:?}: unknown letter {key:?} (n m w c k b s r j l t d f x h p a g o e)"
                    ))
                }
            }
        }
        if !(1..=5).contains(&scope.members) {
            return Err(format!("n{}: the explorer runs 1 to 5 members", scope.members));
        }
        scope.writers = scope.writers.min(scope.members);
        if (1..=scope.members).all(|rank| scope.gone_at_start & 1 << rank != 0) {
            return Err("g: at least one founder must stay".to_string());
        }
        Ok(scope)
    }

    /// True if the lives of `rank` multicast.
    pub fn writes(&self, rank: u16) -> bool {
        match self.origins {
            Some(set) => rank < 32 && set & 1 << rank != 0,
            None => rank <= self.writers,
        }
    }

    /// True if `rank` left before the search starts.
    pub fn gone_at_start(&self, rank: u16) -> bool {
        rank < 32 && self.gone_at_start & 1 << rank != 0
    }

    /// True if faults (crashes, power cuts, restarts) may happen at `rank`.
    pub fn may_fault(&self, rank: u16) -> bool {
        rank < 32 && self.faulty_ranks & 1 << rank != 0
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "n{} m{} w{} c{} k{} b{} s{} r{} l{} t{} d{} f{} x{}",
            self.members,
            self.multicasts_per_life,
            self.writers,
            self.crashes,
            self.power_cuts,
            self.breaks,
            self.false_suspicions,
            self.restarts,
            self.leaves,
            self.ticks,
            self.depth_max,
            u8::from(self.separate_flushes),
            u8::from(self.state_transfer)
        )?;
        // The newer fields only when set, so the older scopes' texts (and replay commands) stay as they were.
        if self.helper != 0 {
            write!(f, " h{}", self.helper)?;
        }
        match self.ports {
            PortMode::Fresh => {}
            PortMode::SameAsRank => write!(f, " p1")?,
            PortMode::LowestFree => write!(f, " p2")?,
        }
        if self.faulty_ranks != u32::MAX {
            write!(f, " a{}", rank_digits(self.faulty_ranks))?;
        }
        if let Some(set) = self.origins {
            write!(f, " o{}", rank_digits(set))?;
        }
        if self.gone_at_start != 0 {
            write!(f, " g{}", rank_digits(self.gone_at_start))?;
        }
        if self.withdrawals != 0 {
            write!(f, " e{}", self.withdrawals)?;
        }
        if self.late_greetings != 0 {
            write!(f, " j{}", self.late_greetings)?;
        }
        Ok(())
    }
}

/// A set of ranks from its digits (`23`: ranks 2 and 3), as a bit per rank.
fn rank_set(digits: &str) -> u32 {
    digits.bytes().fold(0, |set, digit| set | 1 << (digit - b'0'))
}

/// The digits of a set of ranks ([`rank_set`]'s inverse).
fn rank_digits(set: u32) -> String {
    (1..=9u8)
        .filter(|r| set & 1 << r != 0)
        .map(|r| char::from(b'0' + r))
        .collect()
}

/// What one path has spent of its scope's budgets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Spent {
    pub crashes: u32,
    pub power_cuts: u32,
    pub breaks: u32,
    pub false_suspicions: u32,
    pub withdrawals: u32,
    pub restarts: u32,
    pub late_greetings: u32,
    pub leaves: u32,
    pub ticks: u32,
}

impl Spent {
    /// Faults spent: crashes, power cuts, breaks, false suspicions and late greetings (a slow link). A restart is a fault only
    /// while its rank's old process still runs, which [`super::world::World::take`] decides.
    pub fn faults(&self) -> u32 {
        self.crashes + self.power_cuts + self.breaks + self.false_suspicions + self.late_greetings
    }
}
