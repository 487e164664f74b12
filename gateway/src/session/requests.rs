//! Client requests: parsing a frame, starting the operation it asks for,
//! pipelining publishes, and authentication.

use postmesh_schema::protocol::too_large;

use super::*;

impl<T> Session<T>
where
    T: Stream<Item = Inbound> + Sink<Outbound> + Unpin + Send,
{
    /// so any other request is deferred until they are done.
    pub(super) async fn on_text(
        &mut self,
        text: &str,
        inflight: &mut Option<Op>,
        busy: bool,
    ) -> Result<(), Stop> {
        self.ctx.metrics.frames_in.inc();
        let frame = match parse_client_frame(text, &self.ctx.config.limits) {
            Ok(f) => f,
            Err(e) => return self.send_err(e).await,
        };
        let id = frame.id();
        match frame {
            ClientFrame::Ping { id } => return self.send(ok_frame(id, r#","pong":true"#)).await,
            ClientFrame::Auth { id, token } => return self.on_auth(id, &token, inflight).await,
            _ if self.grants.is_unauthenticated() => {
                return self
                    .send_err(FrameError::new(
                        Some(id),
                        ErrorCode::Unauthorized,
                        "authenticate first: send an auth frame or connect with ?token=",
                    ))
                    .await;
            }
            _ => {}
        }
        if busy && !matches!(frame, ClientFrame::Pub { .. }) {
            self.deferred = Some(frame);
            return Ok(());
        }
        self.on_request(frame, inflight).await
    }

    /// Starts a request: a publish joins the next batch; anything else
    /// becomes the operation in flight.
    pub(super) async fn on_request(
        &mut self,
        frame: ClientFrame,
        inflight: &mut Option<Op>,
    ) -> Result<(), Stop> {
        let user = self.grants.user;
        let core = self.ctx.core.clone();
        let op: Op = match frame {
            ClientFrame::Ping { .. } | ClientFrame::Auth { .. } => unreachable!("handled above"),
            ClientFrame::Sub {
                id,
                pattern,
                history,
                since,
            } => {
                if !self.grants.can_read(&pattern) {
                    return self.forbidden(id, &pattern).await;
                }
                if self.subs.patterns.contains(&pattern) {
                    return self.send(ok_frame(id, r#","already":true"#)).await;
                }
                if self.subs.patterns.len() >= self.ctx.config.max_subscriptions {
                    let max = self.ctx.config.max_subscriptions;
                    return self
                        .send_err(FrameError::new(
                            Some(id),
                            ErrorCode::TooManySubscriptions,
                            format!("at most {max} subscriptions per connection"),
                        ))
                        .await;
                }
                self.subs.patterns.push(pattern.clone());
                if history.is_none() && since.is_none() {
                    let (hub, conn) = (self.ctx.hub.clone(), self.subs.conn.clone());
                    Box::pin(async move {
                        let result = hub
                            .subscribe(&conn, &pattern)
                            .await
                            .map_err(|e| postoffice_error(Some(id), e));
                        Done::Subscribed {
                            id,
                            pattern,
                            result,
                        }
                    })
                } else {
                    self.start_replay(id, pattern, history, since)
                }
            }
            ClientFrame::Unsub { id, pattern } => {
                let Some(pos) = self.subs.patterns.iter().position(|p| *p == pattern) else {
                    return self
                        .send_err(FrameError::new(
                            Some(id),
                            ErrorCode::NotSubscribed,
                            format!("not subscribed to {pattern}"),
                        ))
                        .await;
                };
                if self.merge.is_pending(&pattern) {
                    return self
                        .send_err(FrameError::new(
                            Some(id),
                            ErrorCode::NotSubscribed,
                            format!("{pattern} is still being subscribed"),
                        ))
                        .await;
                }
                self.subs.patterns.remove(pos);
                self.merge.forget(&pattern);
                self.prefs.retain(|p| *p != pattern);
                let (hub, conn) = (self.ctx.hub.clone(), self.subs.conn.clone());
                Box::pin(async move {
                    let result = hub
                        .unsubscribe(&conn, &pattern)
                        .await
                        .map_err(|e| postoffice_error(Some(id), e));
                    Done::Unsubscribed { id, result }
                })
            }
            ClientFrame::Pub { id, message } => {
                if !self.grants.can_publish(&message.path) {
                    let path = message.path.clone();
                    return self
                        .send_err(FrameError::new(
                            Some(id),
                            ErrorCode::Forbidden,
                            format!("the token does not allow publishing to {path}"),
                        ))
                        .await;
                }
                if let Some(e) = too_large(Some(id), &message, self.ctx.config.max_message_bytes) {
                    return self.send_err(e).await;
                }
                self.ctx.metrics.messages_published.inc();
                self.publishes.push((id, message));
                return Ok(());
            }
            ClientFrame::History {
                id,
                pattern,
                limit,
                before,
            } => {
                if !self.grants.can_read(&pattern) {
                    return self.forbidden(id, &pattern).await;
                }
                Box::pin(async move {
                    let result = core
                        .history(pattern, limit as usize, before, user)
                        .await
                        .map_err(|e| core_error(Some(id), e));
                    Done::Messages { id, result }
                })
            }
            ClientFrame::Latest { id, pattern } => {
                if !self.grants.can_read(&pattern) {
                    return self.forbidden(id, &pattern).await;
                }
                Box::pin(async move {
                    let result = core
                        .latest(pattern, MAX_HISTORY_LIMIT as usize, user)
                        .await
                        .map_err(|e| core_error(Some(id), e));
                    Done::Messages { id, result }
                })
            }
            ClientFrame::Dismiss { id, uuid } => {
                let Some(user) = user else {
                    return self
                        .send_err(FrameError::new(
                            Some(id),
                            ErrorCode::Unauthorized,
                            "dismiss needs a token with a user (sub claim)",
                        ))
                        .await;
                };
                Box::pin(async move {
                    let result = core
                        .dismiss(user, uuid)
                        .await
                        .map_err(|e| core_error(Some(id), e));
                    Done::Dismissed { id, result }
                })
            }
        };
        *inflight = Some(op);
        Ok(())
    }

    /// Sends the publishes read so far to the core as one batch: stored in
    /// order, distributed in order, answered in order.
    pub(super) fn start_publish(&mut self) -> PublishOp {
        let (ids, messages): (Vec<u64>, Vec<Message>) =
            std::mem::take(&mut self.publishes).into_iter().unzip();
        let core = self.ctx.core.clone();
        Box::pin(async move { (ids, core.publish(messages).await) })
    }

    /// Answers every publish of a batch, with one flush.
    pub(super) async fn acknowledge(
        &mut self,
        ids: Vec<u64>,
        result: Result<Vec<Published>, CoreError>,
    ) -> Result<(), Stop> {
        let frames: Vec<String> = match result {
            Ok(published) => ids
                .iter()
                .zip(published)
                .map(|(id, p)| {
                    ok_frame(
                        *id,
                        &match p.cursor {
                            Some(c) => format!(
                                r#","uuid":"{}","duplicate":{},"cursor":"{c}""#,
                                p.uuid, p.duplicate
                            ),
                            None => {
                                format!(r#","uuid":"{}","duplicate":{}"#, p.uuid, p.duplicate)
                            }
                        },
                    )
                })
                .collect(),
            Err(e) => {
                let e = core_error(None, e);
                self.ctx.metrics.errors.inc_by(ids.len() as u64);
                ids.iter()
                    .map(|id| FrameError::new(Some(*id), e.code, e.message.clone()).to_frame())
                    .collect()
            }
        };
        let deadline = self.write_deadline();
        for f in frames {
            self.write_by(deadline, Some(Outbound::Text(f.into())))
                .await?;
        }
        self.write_by(deadline, None).await
    }

    pub(super) async fn forbidden(&mut self, id: u64, pattern: &Pattern) -> Result<(), Stop> {
        self.send_err(FrameError::new(
            Some(id),
            ErrorCode::Forbidden,
            format!("the token does not allow reading {pattern}"),
        ))
        .await
    }

    pub(super) async fn on_auth(
        &mut self,
        id: u64,
        token: &str,
        inflight: &mut Option<Op>,
    ) -> Result<(), Stop> {
        let grants = match self.ctx.authority.verify(token) {
            Ok(g) => g,
            Err(e) => {
                return self
                    .send_err(FrameError::new(
                        Some(id),
                        ErrorCode::Unauthorized,
                        e.to_string(),
                    ))
                    .await;
            }
        };
        if self.grants.user.is_some() && grants.user != self.grants.user {
            return self
                .send_err(FrameError::new(
                    Some(id),
                    ErrorCode::Forbidden,
                    "this connection is authenticated as another user",
                ))
                .await;
        }
        let first_login = self.grants.user.is_none() && grants.user.is_some();
        // The new token replaces the grants: what it does not cover goes.
        let revoked: Vec<Pattern> = self
            .subs
            .patterns
            .iter()
            .filter(|p| !grants.can_read(p))
            .cloned()
            .collect();
        self.grants = grants;
        self.revoke(&revoked).await?;
        let mut extra = self
            .grants
            .user
            .map(|u| format!(r#","user":"{u}""#))
            .unwrap_or_default();
        if !revoked.is_empty() {
            let dropped: Vec<serde_json::Value> = revoked
                .iter()
                .map(|p| {
                    json!({
                        "pattern": p.as_str(),
                        "code": ErrorCode::Forbidden.as_str(),
                        "message": "the new token does not allow reading this pattern; unsubscribed",
                    })
                })
                .collect();
            extra.push_str(&format!(
                r#","dropped":{}"#,
                serde_json::Value::from(dropped)
            ));
        }
        self.send(ok_frame(id, &extra)).await?;
        if first_login && let Some(u) = self.grants.user {
            *inflight = Some(self.start_login_sync(u));
        }
        Ok(())
    }

    /// Drops subscriptions the grants no longer cover, at once: the hub
    /// stops fanning them out, frames already queued for them are dropped
    /// at the next flush, and a replay queued for them does not run.
    async fn revoke(&mut self, patterns: &[Pattern]) -> Result<(), Stop> {
        if patterns.is_empty() {
            return Ok(());
        }
        self.subs.patterns.retain(|p| !patterns.contains(p));
        self.prefs.retain(|p| !patterns.contains(p));
        for p in patterns {
            self.merge.forget(p);
        }
        if let Some((_, reread)) = self.reread.as_mut() {
            reread.retain(|p| !patterns.contains(p));
        }
        self.ctx.hub.release(&self.subs.conn, patterns.to_vec());
        self.revoking = true;
        self.settle(patterns).await
    }
}
