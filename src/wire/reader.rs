//! Decoding: fields read from a stream, never past the body's length and never trusting a length
//! before checking it against what is left.

use std::io::{self, Read};

use byteorder::{BigEndian, ReadBytesExt};

use super::tags::*;
use super::*;

/// Reads the fields of one body from a stream, never past the body's length.
///
/// `remaining` is what the length prefix still allows. Every read is checked against it first, so a
/// field that would run past the body is [`WireError::Truncated`] (a malformed body), while the stream
/// itself ending is [`ReadError::EofMidFrame`] (a closed connection).
pub(super) struct Reader<'a, R: Read> {
    pub(super) inner: &'a mut R,
    pub(super) remaining: usize,
}

impl<R: Read> Reader<'_, R> {
    fn take(&mut self, len: usize) -> Result<(), ReadError> {
        if len > self.remaining {
            return Err(ReadError::Wire(WireError::Truncated));
        }
        self.remaining -= len;
        Ok(())
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<(), ReadError> {
        self.take(buf.len())?;
        self.inner.read_exact(buf).map_err(stream_error)
    }

    fn u8(&mut self) -> Result<u8, ReadError> {
        self.take(1)?;
        self.inner.read_u8().map_err(stream_error)
    }
    fn u16(&mut self) -> Result<u16, ReadError> {
        self.take(2)?;
        self.inner.read_u16::<BigEndian>().map_err(stream_error)
    }
    fn u32(&mut self) -> Result<u32, ReadError> {
        self.take(4)?;
        self.inner.read_u32::<BigEndian>().map_err(stream_error)
    }
    fn u64(&mut self) -> Result<u64, ReadError> {
        self.take(8)?;
        self.inner.read_u64::<BigEndian>().map_err(stream_error)
    }

    /// A length or count, checked against the bytes left: `count` items of at least `item_len` bytes.
    fn count(&mut self, item_len: usize) -> Result<usize, ReadError> {
        let count = self.u32()? as usize;
        if count.saturating_mul(item_len) > self.remaining {
            return Err(ReadError::Wire(WireError::Truncated));
        }
        Ok(count)
    }

    fn bool(&mut self) -> Result<bool, ReadError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(ReadError::Wire(WireError::Malformed("flag byte is neither 0 nor 1"))),
        }
    }

    /// `len` bytes, in a buffer that grows as they arrive: a length the frame allows but the peer never
    /// sends costs at most [`GROWING_READ_STEP`] bytes.
    fn byte_vec(&mut self, len: usize) -> Result<Vec<u8>, ReadError> {
        self.take(len)?;
        let mut bytes = Vec::with_capacity(len.min(GROWING_READ_STEP));
        let read = (&mut self.inner)
            .take(len as u64)
            .read_to_end(&mut bytes)
            .map_err(stream_error)?;
        if read < len {
            return Err(ReadError::EofMidFrame);
        }
        Ok(bytes)
    }

    fn string(&mut self) -> Result<String, ReadError> {
        let len = self.count(1)?;
        let bytes = self.byte_vec(len)?;
        String::from_utf8(bytes).map_err(|_| ReadError::Wire(WireError::BadUtf8))
    }

    fn payload(&mut self) -> Result<Payload, ReadError> {
        let len = self.count(1)?;
        if len > PAYLOAD_LEN_MAX {
            return Err(ReadError::Wire(WireError::TooLong {
                len: len as u64,
                max: PAYLOAD_LEN_MAX as u64,
            }));
        }
        // Read straight into the shared buffer the payload keeps: one allocation, no copy.
        let mut bytes: Arc<[u8]> = (0..len).map(|_| 0u8).collect();
        match Arc::get_mut(&mut bytes) {
            Some(buf) => self.fill(buf)?,
            None => return Err(ReadError::Wire(WireError::Malformed("payload buffer shared"))),
        }
        Ok(Payload(bytes))
    }

    fn list<T>(
        &mut self,
        item_len_min: usize,
        item: impl FnMut(&mut Self) -> Result<T, ReadError>,
    ) -> Result<Vec<T>, ReadError> {
        self.list_of_at_most(usize::MAX, item_len_min, item)
    }

    /// A list of one entry per member at most: longer is refused, whatever the frame could hold.
    fn member_list<T>(
        &mut self,
        item_len_min: usize,
        item: impl FnMut(&mut Self) -> Result<T, ReadError>,
    ) -> Result<Vec<T>, ReadError> {
        self.list_of_at_most(usize::from(MEMBERS_MAX), item_len_min, item)
    }

    fn list_of_at_most<T>(
        &mut self,
        count_max: usize,
        item_len_min: usize,
        mut item: impl FnMut(&mut Self) -> Result<T, ReadError>,
    ) -> Result<Vec<T>, ReadError> {
        let count = self.count(item_len_min)?;
        if count > count_max {
            return Err(ReadError::Wire(WireError::TooLong {
                len: count as u64,
                max: count_max as u64,
            }));
        }
        let mut items = Vec::with_capacity(count.min(LIST_PREALLOCATE_MAX));
        for _ in 0..count {
            items.push(item(self)?);
        }
        Ok(items)
    }

    fn option<T>(&mut self, item: impl FnOnce(&mut Self) -> Result<T, ReadError>) -> Result<Option<T>, ReadError> {
        if self.bool()? {
            Ok(Some(item(self)?))
        } else {
            Ok(None)
        }
    }

    fn rank(&mut self) -> Result<Rank, ReadError> {
        Ok(Rank(self.u16()?))
    }
    fn nonce(&mut self) -> Result<Nonce, ReadError> {
        let mut nonce = [0; NONCE_LEN];
        self.fill(&mut nonce)?;
        Ok(Nonce(nonce))
    }
    fn proof(&mut self) -> Result<Proof, ReadError> {
        let mut proof = [0; PROOF_LEN];
        self.fill(&mut proof)?;
        Ok(Proof(proof))
    }
    fn view_id(&mut self) -> Result<ViewId, ReadError> {
        Ok(ViewId(self.u64()?))
    }
    fn ranks(&mut self) -> Result<Vec<Rank>, ReadError> {
        self.member_list(RANK_LEN, |r| r.rank())
    }
    fn acks(&mut self) -> Result<Vec<u64>, ReadError> {
        self.member_list(ACK_LEN, |r| r.u64())
    }
    fn stamp(&mut self) -> Result<Stamp, ReadError> {
        Ok(Stamp {
            lamport: self.u64()?,
            origin: self.rank()?,
        })
    }
    fn ballot(&mut self) -> Result<Ballot, ReadError> {
        Ok(Ballot {
            round: self.u64()?,
            proposer: self.rank()?,
        })
    }
    fn multicast(&mut self) -> Result<Multicast, ReadError> {
        Ok(Multicast {
            origin: self.rank()?,
            seq: self.u64()?,
            lamport: self.u64()?,
            payload: self.payload()?,
        })
    }
    /// A data frame's run: the origin, the first seq, then each message's Lamport time and payload.
    /// An empty run, or one whose seqs would pass `u64::MAX`, is malformed.
    fn batch(&mut self) -> Result<Batch, ReadError> {
        let origin = self.rank()?;
        let mut next_seq = Some(self.u64()?);
        let msgs = self.list(BATCH_ENTRY_LEN_MIN, |r| {
            let seq = next_seq.ok_or(WireError::Malformed("data run past the largest seq"))?;
            next_seq = seq.checked_add(1);
            Ok(Multicast {
                origin,
                seq,
                lamport: r.u64()?,
                payload: r.payload()?,
            })
        })?;
        Batch::from_msgs(msgs).ok_or(ReadError::Wire(WireError::Malformed("data frame without a message")))
    }
    fn multicasts(&mut self) -> Result<Vec<Multicast>, ReadError> {
        self.list(MULTICAST_LEN_MIN, |r| r.multicast())
    }
    fn view(&mut self) -> Result<View, ReadError> {
        Ok(View {
            id: self.view_id()?,
            members: self.member_list(MEMBER_ID_LEN, |r| {
                Ok(MemberId {
                    rank: r.rank()?,
                    incarnation: Incarnation(r.u64()?),
                    process: ProcessId(r.u64()?),
                })
            })?,
        })
    }
    fn member_id(&mut self) -> Result<MemberId, ReadError> {
        Ok(MemberId {
            rank: self.rank()?,
            incarnation: Incarnation(self.u64()?),
            process: ProcessId(self.u64()?),
        })
    }
    fn message_ref(&mut self) -> Result<MessageRef, ReadError> {
        Ok(MessageRef {
            lamport: self.u64()?,
            origin: self.rank()?,
            seq: self.u64()?,
        })
    }
    fn message_refs(&mut self) -> Result<Vec<MessageRef>, ReadError> {
        self.list(MESSAGE_REF_LEN, |r| r.message_ref())
    }
    fn proposal(&mut self) -> Result<Proposal, ReadError> {
        Ok(Proposal {
            view: self.view()?,
            carried: self.message_refs()?,
            start_position: self.u64()?,
            lamport: self.u64()?,
        })
    }
    fn report(&mut self) -> Result<Report, ReadError> {
        Ok(Report {
            delivered_count: self.u64()?,
            last_delivered: self.option(|r| r.stamp())?,
            held: self.message_refs()?,
            suspects: self.ranks()?,
            leaving: self.ranks()?,
            joining: self.member_list(JOINING_LEN, |r| Ok((r.rank()?, ProcessId(r.u64()?))))?,
            lamport: self.u64()?,
        })
    }

    /// Checks [`MAGIC`] and [`PROTOCOL_VERSION`] before any other field of a handshake is looked at.
    fn handshake_header(&mut self) -> Result<(), ReadError> {
        let mut magic = [0; MAGIC.len()];
        self.fill(&mut magic)?;
        if magic != MAGIC {
            return Err(ReadError::Wire(WireError::BadMagic));
        }
        let theirs = self.u16()?;
        if theirs != PROTOCOL_VERSION {
            return Err(ReadError::Wire(WireError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs,
            }));
        }
        Ok(())
    }

    pub(super) fn frame(&mut self) -> Result<Frame, ReadError> {
        let tag = self.u8()?;
        let frame = match tag {
            TAG_HELLO => Frame::Hello(self.hello()?),
            TAG_WELCOME => Frame::Welcome,
            TAG_REFUSE => Frame::Refuse { reason: self.string()? },
            TAG_HEARTBEAT => Frame::Heartbeat,
            TAG_REGISTER => Frame::Register(self.register()?),
            TAG_ROSTER => Frame::Roster(self.roster()?),
            TAG_PROTOCOL => Frame::Protocol(self.message()?),
            TAG_STATUS_REPORT => Frame::StatusReport { report: self.string()? },
            TAG_CHALLENGE => Frame::Challenge {
                nonce: self.nonce()?,
                proof: self.proof()?,
            },
            TAG_PROOF => Frame::Proof(self.proof()?),
            TAG_SNAPSHOT => self.snapshot()?,
            tag => return Err(ReadError::Wire(WireError::UnknownTag { what: "frame", tag })),
        };
        if self.remaining != 0 {
            return Err(ReadError::Wire(WireError::Malformed("bytes left after the last field")));
        }
        Ok(frame)
    }

    fn hello(&mut self) -> Result<Hello, ReadError> {
        self.handshake_header()?;
        Ok(Hello {
            group: self.string()?,
            rank: self.rank()?,
            incarnation: Incarnation(self.u64()?),
            process: ProcessId(self.u64()?),
            purpose: match self.u8()? {
                PURPOSE_FORM => Purpose::Form,
                PURPOSE_REJOIN => Purpose::Rejoin,
                PURPOSE_STATUS => Purpose::Status,
                tag => return Err(ReadError::Wire(WireError::UnknownTag { what: "purpose", tag })),
            },
            nonce: self.option(|r| r.nonce())?,
        })
    }

    fn register(&mut self) -> Result<Register, ReadError> {
        self.handshake_header()?;
        Ok(Register {
            group: self.string()?,
            host: self.string()?,
            port: self.u16()?,
            process: ProcessId(self.u64()?),
            rejoin: self.option(|r| r.rank())?,
            admitted: self.option(|r| Ok(Incarnation(r.u64()?)))?,
            nonce: self.option(|r| r.nonce())?,
        })
    }

    fn roster(&mut self) -> Result<Roster, ReadError> {
        Ok(Roster {
            rank: self.rank()?,
            size: self.u16()?,
            members: self.member_list(ROSTER_ENTRY_LEN_MIN, |r| {
                Ok(RosterEntry {
                    rank: r.rank()?,
                    host: r.string()?,
                    port: r.u16()?,
                    incarnation: Incarnation(r.u64()?),
                    process: ProcessId(r.u64()?),
                })
            })?,
            from: self.option(|r| r.member_id())?,
        })
    }

    /// A snapshot chunk; one that would reach past the state's end is malformed.
    fn snapshot(&mut self) -> Result<Frame, ReadError> {
        let view = ViewId(self.u64()?);
        let position = self.u64()?;
        let offset = self.u64()?;
        let total = self.u64()?;
        let len = self.count(1)?;
        if offset.checked_add(len as u64).map_or(true, |end| end > total) {
            return Err(ReadError::Wire(WireError::Malformed(
                "snapshot chunk beyond the state's end",
            )));
        }
        Ok(Frame::Snapshot(SnapshotChunk {
            view,
            position,
            offset,
            total,
            bytes: self.byte_vec(len)?,
        }))
    }

    fn message(&mut self) -> Result<Message, ReadError> {
        let tag = self.u8()?;
        Ok(match tag {
            MSG_DATA => Message::Data {
                view: self.view_id()?,
                batch: self.batch()?,
                acks: self.acks()?,
            },
            MSG_ACK => Message::Ack {
                view: self.view_id()?,
                acks: self.acks()?,
            },
            MSG_SUSPECT => Message::Suspect {
                view: self.view_id()?,
                rank: self.rank()?,
            },
            MSG_LEAVE => Message::Leave { view: self.view_id()? },
            MSG_PREPARE => Message::Prepare {
                view: self.view_id()?,
                ballot: self.ballot()?,
            },
            MSG_PROMISE => Message::Promise {
                view: self.view_id()?,
                ballot: self.ballot()?,
                accepted: self.option(|r| Ok((r.ballot()?, Box::new(r.proposal()?))))?,
                report: Box::new(self.report()?),
            },
            MSG_REJECT => Message::Reject {
                view: self.view_id()?,
                ballot: self.ballot()?,
                promised: self.ballot()?,
            },
            MSG_ACCEPT => Message::Accept {
                view: self.view_id()?,
                ballot: self.ballot()?,
                proposal: Box::new(self.proposal()?),
            },
            MSG_ACCEPTED => Message::Accepted {
                view: self.view_id()?,
                ballot: self.ballot()?,
            },
            MSG_DECIDE => Message::Decide {
                proposal: Box::new(self.proposal()?),
            },
            MSG_JOIN_REQUEST => Message::JoinRequest {
                rank: self.rank()?,
                process: ProcessId(self.u64()?),
            },
            MSG_JOIN_REFUSED => Message::JoinRefused { reason: self.string()? },
            MSG_FETCH => Message::Fetch {
                view: self.view_id()?,
                wanted: self.message_refs()?,
            },
            MSG_CARRY => Message::Carry {
                view: self.view_id()?,
                msgs: self.multicasts()?,
            },
            MSG_PROGRESS => Message::Progress { view: self.view_id()? },
            tag => return Err(ReadError::Wire(WireError::UnknownTag { what: "message", tag })),
        })
    }
}

/// A failed read of a field that the length prefix allows: the stream, not the body, is at fault.
fn stream_error(error: io::Error) -> ReadError {
    if error.kind() == io::ErrorKind::UnexpectedEof {
        ReadError::EofMidFrame
    } else {
        ReadError::Io(error)
    }
}
