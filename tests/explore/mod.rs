//! The exhaustive explorer: every schedule of a small group, each state checked.
//!
//! The random sweeps (`tests/simulation.rs`) draw schedules; a schedule that needs several unlikely
//! choices in a row is never drawn. Here every choice a state allows is taken in turn, within a
//! [`scope::Scope`]'s budgets, so a small world is searched whole (the small-scope hypothesis: most
//! protocol bugs already show with two or three processes and a handful of events).
//!
//! - [`scope`]: what one exploration covers (group size and budgets), as a short text;
//! - [`world`]: one state (the simulator's world, the endpoints driven through their driver
//!   interface) and the choices it allows next;
//! - [`properties`]: what every state and every quiet state must satisfy;
//! - [`search`]: depth-first search with state fingerprints, its figures, and the counterexample path
//!   with its replay.
//!
//! The model is written against the simulator's [`crate::sim::Action`]s, which are the endpoint's
//! driver calls (a frame arrives, a connection opens or closes, a tick, a suspicion, a multicast),
//! so it survives a rewrite of what is behind the endpoint.

pub mod properties;
pub mod scope;
pub mod search;
pub mod world;
