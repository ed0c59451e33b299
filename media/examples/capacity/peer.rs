//! The clients: `rtc` sans-I/O peer connections, each on its own UDP socket.

use super::*;

/// One client peer connection on its own UDP socket.
pub(crate) struct Conn {
    pc: RTCPeerConnection,
    sock: UdpSocket,
    local: SocketAddr,
}

impl Conn {
    pub(crate) async fn new() -> Res<Self> {
        let sock = UdpSocket::bind("127.0.0.1:0").await?;
        let local = sock.local_addr()?;
        let pc = mescon_media::bench::client_pc(local, Instant::now())?;
        Ok(Self { pc, sock, local })
    }

    /// Sends what the connection has queued.
    async fn flush(&mut self) {
        while let Some(m) = self.pc.poll_write() {
            let _ = self.sock.send_to(&m.message, m.transport.peer_addr).await;
        }
    }

    fn read(&mut self, data: &[u8], from: SocketAddr) {
        let _ = self.pc.handle_read(TaggedBytesMut {
            now: Instant::now(),
            transport: TransportContext {
                local_addr: self.local,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        });
    }

    /// Whether the connection (re)reported connected, or failed.
    fn events(&mut self, counters: &Counters) -> bool {
        let mut up = false;
        while let Some(ev) = self.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) = ev {
                match state {
                    RTCPeerConnectionState::Connected => up = true,
                    RTCPeerConnectionState::Failed => {
                        counters.failed.store(true, Ordering::Relaxed)
                    }
                    _ => {}
                }
            }
        }
        up
    }

    /// Waits for the socket, a signalling line, or the connection's next timer; returns the
    /// line if one came. Datagrams already waiting are all read in one go.
    async fn step(
        &mut self,
        lines: &mut mpsc::UnboundedReceiver<String>,
        tick: Option<&mut tokio::time::Interval>,
        buf: &mut [u8],
    ) -> Option<Option<String>> {
        self.flush().await;
        let wake = self
            .pc
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_millis(100));
        let tick = async {
            match tick {
                Some(t) => t.tick().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = self.sock.recv_from(buf) => {
                if let Ok((n, from)) = r {
                    self.read(&buf[..n], from);
                    while let Ok((n, from)) = self.sock.try_recv_from(buf) {
                        self.read(&buf[..n], from);
                    }
                }
                Some(None)
            }
            line = lines.recv() => line.map(Some),
            _ = tokio::time::sleep_until(wake.into()) => {
                let _ = self.pc.handle_timeout(Instant::now());
                Some(None)
            }
            _ = tick => Some(None),
        }
    }

    /// A subscriber: answers every offer, decrypts and counts every packet.
    pub(crate) async fn subscribe(
        mut self,
        pid: String,
        mut lines: mpsc::UnboundedReceiver<String>,
        signal: Signal,
        counters: Arc<Counters>,
        load: Arc<Load>,
    ) {
        let mut buf = vec![0u8; 2048];
        let mut ssrcs = HashSet::new();
        let mut complete = false;
        while let Some(line) = self.step(&mut lines, None, &mut buf).await {
            self.events(&counters);
            let mut n = 0;
            while let Some(m) = self.pc.poll_read() {
                if let RTCMessage::RtpPacket(_, p) = m.message {
                    n += 1;
                    if !complete && ssrcs.insert(p.header.ssrc) && ssrcs.len() >= load.streams {
                        complete = true;
                        counters.complete.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            counters.received.fetch_add(n, Ordering::Relaxed);
            let Some(line) = line else { continue };
            let (verb, _, rest) = words(&line);
            match verb {
                "offer" => match self.answer(&unescape(rest)) {
                    Ok(answer) => signal.send("answer", &pid, &escape(&answer)),
                    Err(e) => {
                        eprintln!("capacity: {pid} cannot answer: {e}");
                        counters.failed.store(true, Ordering::Relaxed);
                    }
                },
                "error" | "failed" => {
                    eprintln!("capacity: {line}");
                    counters.failed.store(true, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    }

    fn answer(&mut self, offer: &str) -> Res<String> {
        let now = Instant::now();
        self.pc
            .set_remote_description(now, RTCSessionDescription::offer(offer.to_string())?)?;
        let answer = self.pc.create_answer(None)?;
        self.pc.set_local_description(now, answer)?;
        Ok(self
            .pc
            .local_description()
            .ok_or("no local description")?
            .sdp)
    }

    /// A publisher: one VP8 and one Opus track, a frame of each every `1/frames_per_s` s while
    /// the driver says so (the frames due are sent each millisecond, together: all publishers
    /// tick on the same millisecond, a burstier arrival than independent devices make).
    pub(crate) async fn publish(
        mut self,
        pid: String,
        mut lines: mpsc::UnboundedReceiver<String>,
        signal: Signal,
        counters: Arc<Counters>,
        load: Arc<Load>,
    ) {
        let result: Res<()> = async {
            let mut senders = Vec::new();
            for (kind, mime, clock, channels) in [
                (RtpCodecKind::Video, "video/VP8", 90_000, 0),
                (RtpCodecKind::Audio, "audio/opus", 48_000, 2),
            ] {
                let ssrc = ssrc_for(&pid, kind);
                let track = MediaStreamTrack::new(
                    pid.clone(),
                    format!("{pid}-{kind}"),
                    format!("{pid}-{kind}"),
                    kind,
                    vec![RTCRtpEncodingParameters {
                        rtp_coding_parameters: RTCRtpCodingParameters {
                            ssrc: Some(ssrc),
                            ..Default::default()
                        },
                        codec: RTCRtpCodec {
                            mime_type: mime.into(),
                            clock_rate: clock,
                            channels,
                            ..Default::default()
                        },
                        ..Default::default()
                    }],
                );
                senders.push((self.pc.add_track(track)?, kind, ssrc));
            }
            let offer = self.pc.create_offer(None)?;
            self.pc.set_local_description(Instant::now(), offer)?;
            let sdp = self.pc.local_description().ok_or("no offer")?.sdp;
            signal.send("publish", &pid, &escape(&sdp));
            let answer = loop {
                let line = lines.recv().await.ok_or("signalling ended")?;
                match words(&line) {
                    ("answer", _, sdp) => break unescape(sdp),
                    // Offers of the other publishers' tracks: this client only publishes.
                    ("up" | "offer", ..) => {}
                    _ => return Err(format!("publish: {line}").into()),
                }
            };
            self.pc
                .set_remote_description(Instant::now(), RTCSessionDescription::answer(answer)?)?;

            let mut buf = vec![0u8; 2048];
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut connected = false;
            let mut started: Option<Instant> = None;
            let mut frames = 0u64;
            while let Some(line) = self.step(&mut lines, Some(&mut tick), &mut buf).await {
                if self.events(&counters) && !connected {
                    connected = true;
                    counters.publishing.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(line) = line
                    && matches!(words(&line).0, "error" | "failed")
                {
                    return Err(line.into());
                }
                if !connected || !counters.sending.load(Ordering::Relaxed) {
                    started = None;
                    continue;
                }
                let start = *started.get_or_insert_with(|| {
                    frames = 0;
                    Instant::now()
                });
                let due = (start.elapsed().as_micros() as u64 * load.frames_per_s) / 1_000_000;
                // A tick that comes late skips what it missed rather than sending it as one
                // burst: independent publishers do not catch up with each other's stalls, and
                // the client thread's own delays should not show as the SFU's. (Skipped frames
                // are neither sent nor counted, so the loss figure stays exact.)
                let per_tick = load.frames_per_s.div_ceil(1000);
                frames = frames.max(due.saturating_sub(per_tick));
                while frames < due {
                    frames += 1;
                    for &(id, kind, ssrc) in &senders {
                        self.write(id, kind, ssrc, frames, load.video_bytes)?;
                    }
                    counters
                        .sent
                        .fetch_add(senders.len() as u64, Ordering::Relaxed);
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            eprintln!("capacity: publisher {pid}: {e}");
            counters.failed.store(true, Ordering::Relaxed);
        }
    }

    /// One frame of `kind`: a VP8 packet (a keyframe every 100 frames) or 60 bytes of Opus.
    fn write(
        &mut self,
        id: RTCRtpSenderId,
        kind: RtpCodecKind,
        ssrc: u32,
        frame: u64,
        video_bytes: usize,
    ) -> Res<()> {
        let mut sender = self.pc.rtp_sender(id).ok_or("no sender")?;
        let payload_type = sender
            .get_parameters()
            .rtp_parameters
            .codecs
            .first()
            .map(|c| c.payload_type)
            .ok_or("no codec negotiated")?;
        let (payload, step) = match kind {
            RtpCodecKind::Video => {
                let mut p = vec![0xabu8; video_bytes];
                // VP8 descriptor: start of partition; payload header: P bit clear = keyframe.
                p[0] = 0x10;
                p[1] = if frame % 100 == 1 { 0x00 } else { 0x01 };
                (p, 3000)
            }
            _ => (vec![0x5a; 60], 960),
        };
        sender.write_rtp(
            Instant::now(),
            rtp::Packet {
                header: rtp::header::Header {
                    version: 2,
                    payload_type,
                    sequence_number: frame as u16,
                    timestamp: (frame as u32).wrapping_mul(step),
                    ssrc,
                    marker: true,
                    ..Default::default()
                },
                payload: Bytes::from(payload),
            },
        )?;
        Ok(())
    }
}

/// A fixed SSRC per publisher and kind, so runs are alike and streams tell apart.
fn ssrc_for(pid: &str, kind: RtpCodecKind) -> u32 {
    let n: u32 = pid
        .trim_start_matches(char::is_alphabetic)
        .parse()
        .unwrap_or(0);
    0x1000_0000 + n * 4 + (kind == RtpCodecKind::Audio) as u32
}
