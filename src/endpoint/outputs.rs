//! The core's outputs as actions: frames onto the connection of their rank's listed life (or kept for an
//! unconnected life), replies to joiners, events; then the connections a view let go, after the
//! decision went out; the state transfer's steps; and the trace.

use std::collections::BTreeMap;

use log::warn;

use super::{Action, Endpoint};
use crate::event::Event;
use crate::protocol::{Input, Outbox, Output};
use crate::state_transfer::Step;
use crate::trace::{self, EventKind, TraceEvent};
use crate::types::MemberId;
use crate::wire::Frame;

impl Endpoint {
    /// Feeds one input to the core and carries out what it outputs.
    pub(super) fn handle(&mut self, input: Input) {
        let traced = if self.settings.trace_clock.is_some() {
            trace::input_events(&self.node, &input)
        } else {
            Vec::new()
        };
        let mut out = Outbox::new();
        self.node.handle(input, &mut out);
        for kind in traced {
            self.trace(kind);
        }
        self.dispatch(out);
    }

    /// The core's outputs, in order, as actions.
    pub(super) fn dispatch(&mut self, mut out: Outbox) {
        let me = self.node.me();
        let outputs: Vec<Output> = out.drain().collect();
        for output in outputs {
            self.trace_output(&output);
            match output {
                Output::Send { to, msg } => match self.send_conn(to) {
                    Some(conn) => self.write(conn, Frame::Protocol(msg)),
                    None => self.keep_unsent(to, Frame::Protocol(msg)),
                },
                Output::Broadcast { to, msg } => {
                    let frame = Frame::Protocol(msg);
                    let mut conns = Vec::with_capacity(to.len());
                    for rank in to {
                        match self.send_conn(rank) {
                            Some(conn) => conns.push(conn),
                            None => self.keep_unsent(rank, frame.clone()),
                        }
                    }
                    for &conn in &conns {
                        self.remember_unconfirmed(conn, &frame);
                    }
                    if !conns.is_empty() {
                        self.actions.push(Action::Broadcast { conns, frame });
                    }
                }
                Output::SendToJoiner { rank, msg } => {
                    // Every process asking for that rank hears it (a refusal is about the rank).
                    for conn in self.asking_conns(rank) {
                        self.write(conn, Frame::Protocol(msg.clone()));
                    }
                }
                Output::Deliver(delivery) => {
                    if delivery.origin == me {
                        self.actions.push(Action::OwnDelivered);
                    }
                    self.report(Event::Deliver(delivery));
                }
                Output::ViewInstalled(view) => self.installed(view),
                Output::Joined { position } => self.actions.push(Action::Event(Event::Joined { position })),
                Output::Excluded { view } => self.finish(Event::Excluded { view }),
                Output::Left => self.finish(Event::Left),
            }
        }
    }

    /// This member delivers nothing more: what the state transfer held is reported, then `last`.
    fn finish(&mut self, last: Event) {
        self.transfer.stop();
        self.carry_out_transfer();
        self.actions.push(Action::Event(last));
        self.finished = true;
    }

    /// After the outputs of one call: closes decided at a view, then the early frames of connections
    /// whose process it listed, in the order they arrived.
    pub(super) fn after_outputs(&mut self) {
        for conn in std::mem::take(&mut self.to_close) {
            self.close(conn);
        }
        let replay = std::mem::take(&mut self.replay);
        if !replay.is_empty() {
            for (conn, frames) in replay {
                for frame in frames {
                    self.on_frame(conn, frame);
                }
            }
            self.after_outputs();
        }
        if self.transfer.waits_for_connections() {
            if let Some(view) = self.node.view().cloned() {
                let connected = self.connected_lives();
                self.transfer.on_connections(&view, &connected);
                self.carry_out_transfer();
            }
        }
    }

    /// Reports an event to the application (the state transfer may hold it).
    pub(super) fn report(&mut self, event: Event) {
        if let Some(event) = self.transfer.report(event) {
            self.actions.push(Action::Event(event));
        }
    }

    /// The lives of the installed view this member has a connection to, each with whether the life
    /// has used it.
    fn connected_lives(&self) -> BTreeMap<MemberId, bool> {
        let Some(view) = self.node.view() else {
            return BTreeMap::new();
        };
        let conn_used = |m: &MemberId| Some((*m, self.conns[&self.conn_of(*m)?].used));
        view.members.iter().filter_map(conn_used).collect()
    }

    /// The state transfer's steps as actions: a hand-off goes on the connections of the lives it names.
    pub(super) fn carry_out_transfer(&mut self) {
        for step in self.transfer.take_steps() {
            match step {
                Step::Event(event) => self.actions.push(Action::Event(event)),
                Step::HandOff { view, position, to } => {
                    let to = to
                        .into_iter()
                        .filter_map(|life| Some((life, self.conn_of(life)?)))
                        .collect();
                    self.actions.push(Action::HandOff { view, position, to });
                }
                Step::Restore(snapshot) => self.actions.push(Action::Restore(snapshot)),
                Step::SponsorGone { sponsor, awaited } => {
                    warn!(
                        "member {}: {sponsor} left before handing over the state of view {awaited}; stopping",
                        self.node.me()
                    );
                    let view = self.node.view().map_or(awaited, |v| v.id);
                    self.actions.push(Action::Event(Event::Excluded { view }));
                    self.finished = true;
                }
            }
        }
    }

    pub(super) fn trace_output(&mut self, output: &Output) {
        if self.settings.trace_clock.is_some() {
            for kind in trace::output_events(&self.node, output) {
                self.trace(kind);
            }
        }
    }

    pub(super) fn trace(&mut self, kind: EventKind) {
        if self.settings.trace_clock.is_some() {
            self.actions.push(Action::Trace(TraceEvent::of(&self.node, 0, kind)));
        }
    }
}
