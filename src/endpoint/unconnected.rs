//! A life of the view with no connection: frames for it are kept (bounded) until one comes, it is
//! dialled by the side [`super::directory`] names, and after a failure timeout it is suspected.

use log::{debug, info, warn};

use super::{Action, Endpoint};
use crate::protocol::{Input, Phase};
use crate::types::{MemberId, Rank};
use crate::wire::Frame;

impl Endpoint {
    /// A frame for a life of the view this member has no connection to yet: kept, in order, for the
    /// connection, up to the early-frame bound (then dropped: the life will be suspected for want of a
    /// connection anyway).
    pub(super) fn keep_unsent(&mut self, to: Rank, frame: Frame) {
        let me = self.node.me();
        let listed = self.node.view().and_then(|v| v.member(to));
        // Not for a suspected life: its connection broke (or it is silent), and a view without it comes.
        let Some(life) = listed.filter(|life| to != me.rank && !self.node.is_suspected(*life)) else {
            debug!("member {me}: no connection to {to}; {} dropped", frame.kind());
            return;
        };
        if self.early.to.keep(life.process, to, frame).is_err() {
            warn!(
                "member {me}: over {} bytes for {life}, which has no connection: dropped",
                self.early.to.limit()
            );
        }
    }

    /// The frames kept for `life` while it had no connection go out on its connection, first (and
    /// stay kept while its process has not used that connection).
    pub(super) fn send_unsent(&mut self, life: MemberId) {
        let Some((conn, used)) = self.conn_of(life).map(|c| (c, self.conns[&c].used)) else {
            return;
        };
        let frames = self.early.to.frames(life.process, life.rank, !used);
        if !frames.is_empty() {
            debug!(
                "member {}: {} frames kept for {life} while it had no connection go out",
                self.node.me(),
                frames.len()
            );
        }
        for frame in frames {
            self.actions.push(Action::Write { conn, frame });
        }
    }

    /// The members of the view this member has no member connection to (of the listed process), in
    /// a view change too: a life admitted right before one (it may coordinate it) needs those
    /// connections to finish it.
    pub(super) fn unconnected(&self) -> Vec<MemberId> {
        let me = self.node.me();
        let Some(view) = self
            .node
            .view()
            .filter(|_| matches!(self.node.phase(), Phase::Member | Phase::Changing))
        else {
            return Vec::new();
        };
        view.members
            .iter()
            .filter(|m| m.rank != me.rank && self.conn_of(**m).is_none())
            .copied()
            .collect()
    }

    /// A member of the view without a member connection cannot take part: after a failure timeout
    /// without one, it is suspected, as a silent member would be, rather than left to stall the group.
    pub(super) fn suspect_unconnected(&mut self) {
        let me = self.node.me();
        let unconnected = self.unconnected();
        let now_ms = self.now_ms;
        self.unconnected_since_ms.retain(|life, _| unconnected.contains(life));
        for life in unconnected {
            let since_ms = *self.unconnected_since_ms.entry(life).or_insert(now_ms);
            if now_ms.saturating_sub(since_ms) > self.settings.failure_timeout_ms {
                warn!(
                    "member {me}: no connection to {life} for over {} ms: suspecting it",
                    self.settings.failure_timeout_ms
                );
                // Again only after another timeout, should the suspicion not lead to a view change.
                self.unconnected_since_ms.insert(life, now_ms);
                self.handle(Input::Suspect(life));
            }
        }
    }

    /// Asks the driver to dial the unconnected lives this member is the one to dial ([`directory`]).
    pub(super) fn dial_unconnected(&mut self) {
        let me = self.node.me();
        let unconnected: Vec<MemberId> = self
            .unconnected()
            .into_iter()
            .filter(|m| !self.node.is_suspected(*m))
            .collect();
        for (life, host, port) in self.directory.due(me, &unconnected, self.now_ms) {
            info!("member {me}: no connection to {life}: dialling it at {host}:{port}");
            self.actions.push(Action::Dial { life, host, port });
        }
    }
}
