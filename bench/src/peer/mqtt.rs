//! MQTT 3.1.1 over WebSocket (subprotocol `mqtt`, binary frames), QoS 0.
//! Packets are encoded and decoded by rumqttc's codec; a frame may carry
//! several packets, or part of one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use async_trait::async_trait;
use bytes::BytesMut;
use futures_util::SinkExt;
use rumqttc::mqttbytes::v4::{Connect, Packet, PingReq, Publish, Subscribe};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use tokio_tungstenite::tungstenite::Message;

use super::{
    Decode, Peer, Publisher, Subscriber, Ws, WsSubscriber, body, connect, next_data, sent_at,
};

/// Largest packet accepted from the broker.
const MAX_PACKET: usize = 1 << 20;

/// An MQTT broker's WebSocket listener: devices subscribe to `bench/#`;
/// publishers publish to `bench/<k mod 16>`.
pub struct Mqtt {
    /// `ws://host:port` (the broker's websockets listener)
    pub url: String,
}

/// Client ids must be unique per broker.
static CLIENTS: AtomicU64 = AtomicU64::new(0);

#[derive(Default)]
struct Reader {
    buf: BytesMut,
}

impl Reader {
    /// Consumes whole packets, handing each to `each`.
    fn feed(&mut self, frame: &Message, mut each: impl FnMut(Packet)) -> anyhow::Result<()> {
        if let Message::Binary(b) = frame {
            self.buf.extend_from_slice(b);
        }
        loop {
            match Packet::read(&mut self.buf, MAX_PACKET) {
                Ok(p) => each(p),
                Err(CodecError::InsufficientBytes(_)) => return Ok(()),
                Err(e) => bail!("bad MQTT packet: {e:?}"),
            }
        }
    }
}

impl Decode for Reader {
    fn decode(
        &mut self,
        frame: Message,
        out: &mut VecDeque<u64>,
    ) -> anyhow::Result<Option<Message>> {
        self.feed(&frame, |p| {
            if let Packet::Publish(p) = p
                && let Some(t) = sent_at(&p.payload)
            {
                out.push_back(t);
            }
        })?;
        Ok(None)
    }
}

fn encode(packet: Packet) -> anyhow::Result<Message> {
    let mut buf = BytesMut::new();
    packet
        .write(&mut buf, MAX_PACKET)
        .map_err(|e| anyhow::anyhow!("encoding MQTT: {e:?}"))?;
    Ok(Message::binary(buf.freeze()))
}

/// Waits for a packet `want` accepts.
async fn wait_for(
    ws: &mut Ws,
    reader: &mut Reader,
    want: fn(&Packet) -> bool,
) -> anyhow::Result<()> {
    loop {
        let frame = next_data(ws, Duration::from_secs(120)).await?;
        let mut found = false;
        reader.feed(&frame, |p| found |= want(&p))?;
        if found {
            return Ok(());
        }
    }
}

/// Connects with a clean session and no keepalive.
async fn handshake(url: &str) -> anyhow::Result<(Ws, Reader)> {
    let mut ws = connect(url, Some("mqtt")).await?;
    let id = format!(
        "bench-{}-{}",
        std::process::id(),
        CLIENTS.fetch_add(1, Ordering::Relaxed)
    );
    let mut c = Connect::new(id);
    c.keep_alive = 0;
    ws.send(encode(Packet::Connect(c))?).await?;
    let mut reader = Reader::default();
    wait_for(&mut ws, &mut reader, |p| matches!(p, Packet::ConnAck(_)))
        .await
        .context("waiting for CONNACK")?;
    Ok((ws, reader))
}

#[async_trait]
impl Peer for Mqtt {
    fn name(&self) -> &str {
        "Mosquitto"
    }

    async fn subscriber(&self) -> anyhow::Result<Box<dyn Subscriber>> {
        let (mut ws, mut reader) = handshake(&self.url).await?;
        let mut s = Subscribe::new("bench/#", QoS::AtMostOnce);
        s.pkid = 1;
        ws.send(encode(Packet::Subscribe(s))?).await?;
        wait_for(&mut ws, &mut reader, |p| matches!(p, Packet::SubAck(_)))
            .await
            .context("waiting for SUBACK")?;
        Ok(Box::new(WsSubscriber::new(ws, reader)))
    }

    async fn publisher(&self) -> anyhow::Result<Box<dyn Publisher>> {
        let (ws, reader) = handshake(&self.url).await?;
        Ok(Box::new(MqttPublisher {
            ws,
            reader,
            sent: 0,
        }))
    }
}

struct MqttPublisher {
    ws: Ws,
    reader: Reader,
    sent: u64,
}

#[async_trait]
impl Publisher for MqttPublisher {
    async fn send(&mut self, size: usize) -> anyhow::Result<()> {
        self.sent += 1;
        let p = Publish::new(
            format!("bench/{}", self.sent % 16),
            QoS::AtMostOnce,
            body(size),
        );
        self.ws.send(encode(Packet::Publish(p))?).await?;
        Ok(())
    }

    /// QoS 0 is not acknowledged; the broker answers a PINGREQ after it
    /// processed what came before it.
    async fn finish(&mut self) -> anyhow::Result<u64> {
        let mut buf = BytesMut::new();
        PingReq
            .write(&mut buf)
            .map_err(|e| anyhow::anyhow!("encoding MQTT: {e:?}"))?;
        self.ws.send(Message::binary(buf.freeze())).await?;
        wait_for(&mut self.ws, &mut self.reader, |p| {
            matches!(p, Packet::PingResp)
        })
        .await?;
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_packets_split_and_joined_across_frames() {
        let p = Publish::new("bench/1", QoS::AtMostOnce, r#"{"t":7,"pad":""}"#);
        let Message::Binary(one) = encode(Packet::Publish(p)).unwrap() else {
            unreachable!()
        };
        let mut two = one.to_vec();
        two.extend_from_slice(&one);
        let mut r = Reader::default();
        let mut out = VecDeque::new();
        r.decode(Message::binary(two), &mut out).unwrap();
        assert_eq!(out, [7, 7]);
        let (a, b) = one.split_at(5);
        r.decode(Message::binary(a.to_vec()), &mut out).unwrap();
        assert_eq!(out.len(), 2);
        r.decode(Message::binary(b.to_vec()), &mut out).unwrap();
        assert_eq!(out, [7, 7, 7]);
    }
}
