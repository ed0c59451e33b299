//! A worker task: owns some rooms and every peer connection in them, and is the only place
//! those connections are touched, so the packet path needs no locks.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tokio::sync::{mpsc, oneshot};

use crate::bwe::MediaId;
use crate::config::Limits;
use crate::error::{Error, Result};
use crate::net::outbox::Outbox;
use crate::net::router::{ConnId, Route};
use crate::peer::Transport;
use crate::room::Room;
use crate::sfu::{MediaIn, Repairs};
use crate::timers::Timers;
use crate::track::TrackId;
use crate::uplink::Received;
use crate::{Event, Pc};

/// How often rooms do their periodic work.
const HOUSEKEEPING: Duration = Duration::from_millis(50);
/// Most queued inputs handled before timers get a look in.
const BATCH: usize = 64;

/// Which participant connection a [`ConnId`] is.
pub(crate) struct ConnInfo {
    pub room: Arc<str>,
    pub participant: Arc<str>,
    pub pc: Pc,
}

/// A datagram routed to a connection of this worker.
pub(crate) struct Datagram {
    pub conn: ConnId,
    pub peer: SocketAddr,
    pub proto: TransportProtocol,
    pub data: BytesMut,
    /// When it reached the host (the kernel's stamp where the socket gives one).
    pub at: Instant,
}

use std::net::SocketAddr;

use crate::latency::DelayHistogram;

/// What the API asks of a worker.
pub(crate) enum Command {
    Join {
        room: Arc<str>,
        participant: Arc<str>,
        events: mpsc::UnboundedSender<Event>,
        reply: oneshot::Sender<Result<()>>,
    },
    PublishOffer {
        room: Arc<str>,
        participant: Arc<str>,
        sdp: String,
        reply: oneshot::Sender<Result<String>>,
    },
    SubscribeAnswer {
        room: Arc<str>,
        participant: Arc<str>,
        sdp: String,
        reply: oneshot::Sender<Result<()>>,
    },
    AddCandidate {
        room: Arc<str>,
        participant: Arc<str>,
        pc: Pc,
        candidate: String,
        reply: oneshot::Sender<Result<()>>,
    },
    RestartIce {
        room: Arc<str>,
        participant: Arc<str>,
        reply: oneshot::Sender<Result<()>>,
    },
    SetMaxLayer {
        room: Arc<str>,
        participant: Arc<str>,
        layer: usize,
        reply: oneshot::Sender<Result<()>>,
    },
    Leave {
        room: Arc<str>,
        participant: Arc<str>,
        reply: oneshot::Sender<Result<()>>,
    },
    CloseRoom {
        room: Arc<str>,
        reply: oneshot::Sender<bool>,
    },
    Stats {
        reply: oneshot::Sender<WorkerStats>,
    },
}

/// Inputs of a worker, in one queue so signaling and media stay ordered.
pub(crate) enum Input {
    Command(Command),
    Datagram(Datagram),
}

/// What a worker holds, for tests and metrics.
#[derive(Debug, Default, Clone)]
pub struct WorkerStats {
    /// Open rooms.
    pub rooms: usize,
    /// Participants in them.
    pub participants: usize,
    /// Live peer connections.
    pub connections: usize,
    /// Time forwarded packets spent in this worker's SFU path.
    pub forward_delay: DelayHistogram,
    /// Publishers' media packets received, by which way.
    pub media_in: MediaIn,
    /// Video packets held for repairs.
    pub cached_packets: usize,
    /// Packets subscribers asked for again, by outcome.
    pub repairs: Repairs,
}

/// State shared by the rooms of one worker.
pub(crate) struct Ctx {
    pub transport: Arc<Transport>,
    /// Datagrams produced this turn, sent together at its end.
    pub out: Outbox,
    pub worker: usize,
    pub conns: HashMap<ConnId, ConnInfo>,
    pub limits: Limits,
    pub connect_timeout: Duration,
    pub track_ids: Arc<AtomicU64>,
    /// Participants to remove after the current step (failed connections).
    pub removals: Vec<(Arc<str>, Arc<str>)>,
    /// Publishers' media packets received, by which way they came in.
    pub media_in: MediaIn,
    /// Packets subscribers asked for again, by outcome.
    pub repairs: Repairs,
    /// Scratch for the media packets a subscriber's feedback confirmed (kept for its allocation).
    pub arrived: Vec<MediaId>,
    /// Scratch for where those came from: (track, layer, publisher's sequence number).
    pub origins: Vec<(TrackId, usize, u16)>,
}

impl Ctx {
    /// The route to a connection of this worker.
    pub fn route(&self, conn: ConnId) -> Route {
        Route {
            worker: self.worker,
            conn,
        }
    }

    /// A fresh track id, unique across workers.
    pub fn next_track_id(&self) -> u64 {
        self.track_ids.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// One worker task's state.
pub(crate) struct Worker {
    ctx: Ctx,
    rooms: HashMap<Arc<str>, Room>,
    timers: Timers,
    /// Connections that handled a datagram this turn: their deadlines may have moved.
    touched: Vec<ConnId>,
    /// Whether every connection's deadline must be asked again (after housekeeping or a
    /// command, which may touch any connection).
    sweep: bool,
    /// Connections due this turn (kept to reuse its allocation).
    firing: Vec<ConnId>,
}

impl Worker {
    /// A worker with no rooms.
    pub fn new(ctx: Ctx) -> Self {
        Self {
            ctx,
            rooms: HashMap::new(),
            timers: Timers::default(),
            touched: Vec::new(),
            sweep: true,
            firing: Vec::new(),
        }
    }

    /// Runs until every sender of `rx` is gone.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        let mut next_housekeeping = Instant::now() + HOUSEKEEPING;
        let mut wake = next_housekeeping;
        loop {
            tokio::select! {
                input = rx.recv() => {
                    let Some(input) = input else { break };
                    self.handle(input);
                    // Each input's datagrams (one packet's whole fan-out) leave before the next
                    // input is handled, so no packet waits for the rest of a burst; the
                    // housekeeping and timer sweep below wait for the batch.
                    self.ctx.out.flush();
                    for _ in 0..BATCH {
                        match rx.try_recv() {
                            Ok(input) => {
                                self.handle(input);
                                self.ctx.out.flush();
                            }
                            Err(_) => break,
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            let now = Instant::now();
            if now >= next_housekeeping {
                for room in self.rooms.values_mut() {
                    room.housekeeping(&mut self.ctx, now);
                }
                next_housekeeping = now + HOUSEKEEPING;
                self.sweep = true;
            }
            self.apply_removals(now);
            // Last, so timers set by anything above are seen before sleeping.
            self.run_timers(now);
            if !self.ctx.removals.is_empty() {
                // A connection failed on a timer: the participant must be gone before the next
                // command, which may well be the same participant joining again.
                self.apply_removals(now);
                self.run_timers(now);
            }
            wake = self
                .timers
                .next()
                .map_or(next_housekeeping, |t| t.min(next_housekeeping));
            self.ctx.out.flush();
        }
        let now = Instant::now();
        let rooms: Vec<Arc<str>> = self.rooms.keys().cloned().collect();
        for room in rooms {
            if let Some(mut r) = self.rooms.remove(&room) {
                let ids: Vec<Arc<str>> = r.participants.keys().cloned().collect();
                for id in ids {
                    let _ = r.leave(&mut self.ctx, &id, now);
                }
            }
        }
    }

    /// Fires the connection timers that are due, each connection at most once a turn. Only
    /// the connections this turn touched are asked for their next deadline, unless a sweep asks
    /// every one (after housekeeping, 20 times a second, so a deadline moved by something not
    /// tracked here fires at most that late).
    fn run_timers(&mut self, now: Instant) {
        if std::mem::take(&mut self.sweep) {
            self.timers.clear();
            self.touched.clear();
            let conns: Vec<ConnId> = self.ctx.conns.keys().copied().collect();
            for conn in conns {
                self.reschedule(conn);
            }
        } else {
            let mut touched = std::mem::take(&mut self.touched);
            for conn in touched.drain(..) {
                self.reschedule(conn);
            }
            self.touched = touched;
        }
        let mut firing = std::mem::take(&mut self.firing);
        while let Some(conn) = self.timers.pop_due(now) {
            firing.push(conn);
        }
        for conn in firing.drain(..) {
            self.fire(conn, now);
        }
        self.firing = firing;
    }

    /// Runs one connection's timers and whatever they produced.
    fn fire(&mut self, conn: ConnId, now: Instant) {
        let Some(info) = self.ctx.conns.get(&conn) else {
            return;
        };
        let (room, pid, pc) = (info.room.clone(), info.participant.clone(), info.pc);
        let Some(r) = self.rooms.get_mut(&room) else {
            return;
        };
        let Some(peer) = r.participants.get_mut(&pid).and_then(|p| p.peer_mut(pc)) else {
            return;
        };
        let _ = peer.pc.handle_timeout(now);
        r.drive(&mut self.ctx, &pid, pc, now);
        self.reschedule(conn);
    }

    /// Asks a connection for its next deadline.
    fn reschedule(&mut self, conn: ConnId) {
        let at = self.ctx.conns.get(&conn).and_then(|info| {
            self.rooms
                .get_mut(&info.room)?
                .participants
                .get_mut(&info.participant)?
                .peer_mut(info.pc)?
                .pc
                .poll_timeout()
        });
        self.timers.set(conn, at);
    }

    fn apply_removals(&mut self, now: Instant) {
        while let Some((room, pid)) = self.ctx.removals.pop() {
            self.leave(&room, &pid, now).ok();
        }
    }

    fn leave(&mut self, room: &str, pid: &str, now: Instant) -> Result<()> {
        let r = self.rooms.get_mut(room).ok_or(Error::UnknownParticipant)?;
        let res = r.leave(&mut self.ctx, pid, now);
        if r.participants.is_empty() {
            self.rooms.remove(room);
        }
        res
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Datagram(d) => self.on_datagram(d),
            Input::Command(c) => self.on_command(c),
        }
    }

    #[inline]
    fn on_datagram(&mut self, d: Datagram) {
        let Some(info) = self.ctx.conns.get(&d.conn) else {
            return;
        };
        let (room, pid, pc) = (info.room.clone(), info.participant.clone(), info.pc);
        let Some(r) = self.rooms.get_mut(&room) else {
            return;
        };
        let Some(peer) = r.participants.get_mut(&pid).and_then(|p| p.peer_mut(pc)) else {
            return;
        };
        let message = match peer.uplink.as_mut() {
            Some(uplink) => match uplink.receive(d.data, d.at) {
                Received::Media(packet, deadline) => {
                    // Whatever the chain now wants to send (reports, NACKs, feedback) it sends
                    // on its timers. Only the chain's deadline can have moved, and asking the
                    // chain alone is far cheaper than asking the whole connection.
                    self.ctx.media_in.uplink += 1;
                    r.forward_media(&mut self.ctx, &pid, packet, d.at);
                    if let Some(at) = deadline {
                        self.timers.advance(d.conn, at);
                    }
                    return;
                }
                Received::Dropped => {
                    self.ctx.media_in.refused += 1;
                    return;
                }
                Received::NotMine(data) => data,
            },
            None => d.data,
        };
        let msg = TaggedBytesMut {
            now: d.at,
            transport: TransportContext {
                local_addr: self.ctx.transport.local_for(d.peer, d.proto),
                peer_addr: d.peer,
                ecn: None,
                transport_protocol: d.proto,
            },
            message,
        };
        if peer.pc.handle_read(msg).is_err() {
            return;
        }
        r.drive(&mut self.ctx, &pid, pc, d.at);
        self.touch(d.conn);
    }

    /// Notes that a connection's deadline may have moved.
    #[inline]
    fn touch(&mut self, conn: ConnId) {
        if self.touched.last() != Some(&conn) {
            self.touched.push(conn);
        }
    }

    fn on_command(&mut self, c: Command) {
        let now = Instant::now();
        self.sweep = true;
        match c {
            Command::Join {
                room,
                participant,
                events,
                reply,
            } => {
                let r = self
                    .rooms
                    .entry(room.clone())
                    .or_insert_with(|| Room::new(room.clone()));
                let res = r.join(&mut self.ctx, participant, events, now);
                if r.participants.is_empty() {
                    self.rooms.remove(&room);
                }
                let _ = reply.send(res);
            }
            Command::PublishOffer {
                room,
                participant,
                sdp,
                reply,
            } => {
                let res = match self.rooms.get_mut(&room) {
                    Some(r) => r.publish_offer(&mut self.ctx, &participant, sdp, now),
                    None => Err(Error::UnknownParticipant),
                };
                let _ = reply.send(res);
            }
            Command::SubscribeAnswer {
                room,
                participant,
                sdp,
                reply,
            } => {
                let ctx = &mut self.ctx;
                let res = match self.rooms.get_mut(&room) {
                    Some(r) => r.subscribe_answer(ctx, &participant, sdp, now),
                    None => Err(Error::UnknownParticipant),
                };
                let _ = reply.send(res);
            }
            Command::AddCandidate {
                room,
                participant,
                pc,
                candidate,
                reply,
            } => {
                let ctx = &mut self.ctx;
                let res = match self.rooms.get_mut(&room) {
                    Some(r) => r.add_candidate(ctx, &participant, pc, candidate, now),
                    None => Err(Error::UnknownParticipant),
                };
                let _ = reply.send(res);
            }
            Command::RestartIce {
                room,
                participant,
                reply,
            } => {
                let ctx = &mut self.ctx;
                let res = match self.rooms.get_mut(&room) {
                    Some(r) => r.restart_ice(ctx, &participant, now),
                    None => Err(Error::UnknownParticipant),
                };
                let _ = reply.send(res);
            }
            Command::SetMaxLayer {
                room,
                participant,
                layer,
                reply,
            } => {
                let res = match self.rooms.get_mut(&room) {
                    Some(r) => r.set_max_layer(&participant, layer),
                    None => Err(Error::UnknownParticipant),
                };
                let _ = reply.send(res);
            }
            Command::Leave {
                room,
                participant,
                reply,
            } => {
                let _ = reply.send(self.leave(&room, &participant, now));
            }
            Command::CloseRoom { room, reply } => {
                let existed = match self.rooms.remove(&room) {
                    Some(mut r) => {
                        let ids: Vec<Arc<str>> = r.participants.keys().cloned().collect();
                        for id in ids {
                            let _ = r.leave(&mut self.ctx, &id, now);
                        }
                        true
                    }
                    None => false,
                };
                let _ = reply.send(existed);
            }
            Command::Stats { reply } => {
                let _ = reply.send(WorkerStats {
                    rooms: self.rooms.len(),
                    participants: self.rooms.values().map(|r| r.participants.len()).sum(),
                    connections: self.ctx.conns.len(),
                    forward_delay: self.ctx.out.delay().clone(),
                    media_in: self.ctx.media_in,
                    cached_packets: self
                        .rooms
                        .values()
                        .flat_map(|r| r.participants.values())
                        .flat_map(|p| p.tracks.iter())
                        .map(|t| t.cached_packets())
                        .sum(),
                    repairs: self.ctx.repairs,
                });
            }
        }
    }
}
