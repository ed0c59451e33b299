//! The SFU: sockets, worker tasks, and the API the application drives.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::SfuConfig;
use crate::error::{Error, Result};
use crate::latency::DelayHistogram;
use crate::net::outbox::Outbox;
use crate::net::router::Router;
use crate::net::{tcp, udp};
use crate::peer::{Candidates, Transport};
use crate::worker::{Command, Ctx, Input, Worker, WorkerStats};
use crate::{Event, Pc};

/// Inputs queued per worker before datagrams are dropped.
const WORKER_QUEUE: usize = 8192;

/// A running SFU. Dropping it stops every task and closes the sockets.
pub struct Sfu {
    workers: Arc<[mpsc::Sender<Input>]>,
    router: Arc<Router>,
    udp_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

/// What the SFU holds right now; a leak check after participants leave should see zeros.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SfuStats {
    /// Open rooms.
    pub rooms: usize,
    /// Participants in them.
    pub participants: usize,
    /// Live peer connections.
    pub connections: usize,
    /// Routes by ICE ufrag.
    pub ufrag_routes: usize,
    /// Routes by remote address.
    pub address_routes: usize,
    /// Open ICE-TCP connections.
    pub tcp_connections: usize,
    /// How long forwarded packets spent in the SFU, from the kernel's receive stamp on the
    /// publisher's datagram to the subscriber's being handed to the kernel, since start.
    pub forward_delay: DelayHistogram,
    /// Publishers' media packets received since start, by which way they came in.
    pub media_in: MediaIn,
    /// Video packets held for repairs now: those some subscriber has not yet confirmed.
    pub cached_packets: usize,
    /// Packets subscribers asked for again (NACK) since start, by what became of the request.
    pub repairs: Repairs,
}

/// What became of the packets subscribers asked for again (NACK), counted per packet.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Repairs {
    /// Sent again from the publisher's packet cache.
    pub sent: u64,
    /// Not a packet the subscriber was sent from a source the SFU still has (never sent, from
    /// before the last few layer switches, or of a track that is gone).
    pub unmapped: u64,
    /// Let go from the cache because every subscriber it went to had confirmed it arrived:
    /// should not happen, as a receiver asks only for what it lacks.
    pub released: u64,
    /// Not in the cache: not arrived yet from the publisher (lost on its way in, while the SFU
    /// asks the publisher for it), aged out, overwritten by newer packets, or from a layer
    /// nobody was receiving or moving to.
    pub missing: u64,
}

impl Repairs {
    /// Adds another worker's counts.
    pub(crate) fn add(&mut self, other: &Repairs) {
        self.sent += other.sent;
        self.unmapped += other.unmapped;
        self.released += other.released;
        self.missing += other.missing;
    }
}

/// Publishers' media packets received since start, by which way they came in: a stream's first
/// packet, RTX and probes through the peer connection, the rest through our own receiver.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MediaIn {
    /// Decrypted and read by the connection's uplink.
    pub uplink: u64,
    /// Delivered by the peer connection.
    pub connection: u64,
    /// Refused by the uplink: failed SRTP authentication or replay check, or unreadable.
    pub refused: u64,
}

impl Sfu {
    /// Binds the UDP socket (and the ICE-TCP listener if configured) and starts the tasks.
    ///
    /// Must be called inside a tokio runtime.
    pub async fn start(config: SfuConfig) -> Result<Sfu> {
        let n = if config.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.workers
        };
        // One socket (and reader) per worker, so receiving also spreads over the cores.
        let sockets: Vec<Arc<UdpSocket>> = udp::bind_group(config.udp, n)?
            .into_iter()
            .map(Arc::new)
            .collect();
        let udp_addr = sockets[0].local_addr()?;
        let listener = match config.ice_tcp {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        let tcp_addr = match &listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let ips = if config.public_ips.is_empty() {
            if udp_addr.ip().is_unspecified() {
                return Err(Error::Signaling(
                    "a wildcard UDP address needs public_ips to advertise",
                ));
            }
            vec![udp_addr.ip()]
        } else {
            config.public_ips.clone()
        };
        let router = Arc::new(Router::default());
        let transport = Arc::new(Transport {
            udp: sockets[0].clone(),
            candidates: Candidates {
                udp_port: udp_addr.port(),
                tcp_port: tcp_addr.map(|a| a.port()),
                ips,
            },
            router: router.clone(),
        });
        let track_ids = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        let mut senders = Vec::with_capacity(n);
        for worker in 0..n {
            let (tx, rx) = mpsc::channel(WORKER_QUEUE);
            senders.push(tx);
            let ctx = Ctx {
                transport: transport.clone(),
                out: Outbox::new(transport.clone(), config.batched_udp),
                worker,
                conns: Default::default(),
                limits: config.limits.clone(),
                connect_timeout: config.connect_timeout,
                track_ids: track_ids.clone(),
                removals: Vec::new(),
                media_in: Default::default(),
                repairs: Default::default(),
                arrived: Vec::new(),
                origins: Vec::new(),
            };
            tasks.push(tokio::spawn(Worker::new(ctx).run(rx)));
        }
        let workers: Arc<[mpsc::Sender<Input>]> = senders.into();
        for socket in sockets {
            tasks.push(tokio::spawn(udp::read_loop(
                socket,
                router.clone(),
                workers.clone(),
                config.batched_udp,
            )));
        }
        if let Some(listener) = listener {
            tasks.push(tokio::spawn(tcp::accept_loop(
                listener,
                router.clone(),
                workers.clone(),
            )));
        }
        Ok(Sfu {
            workers,
            router,
            udp_addr,
            tcp_addr,
            tasks,
        })
    }

    /// The bound UDP address (with the real port when 0 was asked).
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// The bound ICE-TCP address, if ICE-TCP is on.
    pub fn ice_tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// Adds a participant to a room (created on first join). Events for it arrive on the
    /// returned receiver until it leaves or fails.
    pub async fn join(
        &self,
        room: &str,
        participant: &str,
    ) -> Result<(ParticipantHandle, mpsc::UnboundedReceiver<Event>)> {
        let room: Arc<str> = room.into();
        let participant: Arc<str> = participant.into();
        let worker = self.workers[worker_for(&room, self.workers.len())].clone();
        let (events, rx) = mpsc::unbounded_channel();
        let handle = ParticipantHandle {
            room: room.clone(),
            participant: participant.clone(),
            worker,
        };
        handle
            .ask(|reply| Command::Join {
                room,
                participant,
                events,
                reply,
            })
            .await??;
        Ok((handle, rx))
    }

    /// Ends a call: every participant leaves and everything they held is freed. Their event
    /// receivers then end (`recv` returns `None`). Returns whether the room existed.
    pub async fn close_room(&self, room: &str) -> Result<bool> {
        let room: Arc<str> = room.into();
        let worker = &self.workers[worker_for(&room, self.workers.len())];
        let (reply, rx) = oneshot::channel();
        worker
            .send(Input::Command(Command::CloseRoom { room, reply }))
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// Counts of rooms, participants, connections and routes.
    pub async fn stats(&self) -> SfuStats {
        let mut s = SfuStats::default();
        for w in self.workers.iter() {
            let (reply, rx) = oneshot::channel();
            if w.send(Input::Command(Command::Stats { reply }))
                .await
                .is_ok()
                && let Ok(WorkerStats {
                    rooms,
                    participants,
                    connections,
                    forward_delay,
                    media_in,
                    cached_packets,
                    repairs,
                }) = rx.await
            {
                s.rooms += rooms;
                s.participants += participants;
                s.connections += connections;
                s.forward_delay.merge(&forward_delay);
                s.media_in.uplink += media_in.uplink;
                s.media_in.connection += media_in.connection;
                s.media_in.refused += media_in.refused;
                s.cached_packets += cached_packets;
                s.repairs.add(&repairs);
            }
        }
        (s.ufrag_routes, s.address_routes, s.tcp_connections) = self.router.counts();
        s
    }
}

impl Drop for Sfu {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.router.close_tcp();
    }
}

/// Every room lives on one worker, so its forwarding never crosses tasks.
fn worker_for(room: &str, n: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    room.hash(&mut h);
    (h.finish() % n.max(1) as u64) as usize
}

/// The application's handle on one participant; cheap to clone.
#[derive(Clone)]
pub struct ParticipantHandle {
    room: Arc<str>,
    participant: Arc<str>,
    worker: mpsc::Sender<Input>,
}

impl ParticipantHandle {
    async fn ask<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.worker
            .send(Input::Command(command(reply)))
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// The room id.
    pub fn room(&self) -> &str {
        &self.room
    }

    /// The participant id.
    pub fn participant(&self) -> &str {
        &self.participant
    }

    /// Applies the client's offer for its publish connection and returns the SFU's answer.
    /// Send it again with new ICE credentials to restart ICE on that connection.
    pub async fn publish_offer(&self, sdp: String) -> Result<String> {
        self.ask(|reply| Command::PublishOffer {
            room: self.room.clone(),
            participant: self.participant.clone(),
            sdp,
            reply,
        })
        .await?
    }

    /// Applies the client's answer to the last [`Event::SubscribeOffer`].
    pub async fn subscribe_answer(&self, sdp: String) -> Result<()> {
        self.ask(|reply| Command::SubscribeAnswer {
            room: self.room.clone(),
            participant: self.participant.clone(),
            sdp,
            reply,
        })
        .await?
    }

    /// Adds a trickled remote ICE candidate (`candidate:...` line; empty means end of
    /// candidates) for one of the two connections.
    pub async fn add_candidate(&self, pc: Pc, candidate: String) -> Result<()> {
        self.ask(|reply| Command::AddCandidate {
            room: self.room.clone(),
            participant: self.participant.clone(),
            pc,
            candidate,
            reply,
        })
        .await?
    }

    /// Restarts ICE on the subscribe connection: a new [`Event::SubscribeOffer`] follows.
    pub async fn restart_ice(&self) -> Result<()> {
        self.ask(|reply| Command::RestartIce {
            room: self.room.clone(),
            participant: self.participant.clone(),
            reply,
        })
        .await?
    }

    /// Caps the simulcast layer this participant receives (0 lowest .. 2 highest), from the
    /// size it displays video at; bandwidth may still choose lower.
    pub async fn set_max_layer(&self, layer: usize) -> Result<()> {
        self.ask(|reply| Command::SetMaxLayer {
            room: self.room.clone(),
            participant: self.participant.clone(),
            layer,
            reply,
        })
        .await?
    }

    /// Leaves the room, freeing the participant's connections, routes and tracks.
    pub async fn leave(&self) -> Result<()> {
        self.ask(|reply| Command::Leave {
            room: self.room.clone(),
            participant: self.participant.clone(),
            reply,
        })
        .await?
    }
}

impl std::fmt::Debug for Sfu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sfu")
            .field("udp", &self.udp_addr)
            .field("ice_tcp", &self.tcp_addr)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ParticipantHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParticipantHandle")
            .field("room", &self.room)
            .field("participant", &self.participant)
            .finish_non_exhaustive()
    }
}
