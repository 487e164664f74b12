//! Login sync: an authenticated user's own id paths, then the patterns of
//! its stored preferences, again whenever they change.

use super::*;

impl<T> Session<T>
where
    T: Stream<Item = Inbound> + Sink<Outbound> + Unpin + Send,
{
    /// A new preferences message of the user went out: re-sync.
    pub(super) fn note_prefs(&mut self, live: &Live) {
        if let Some(user) = self.grants.user
            && live.path == idpath::prefs_path(user).as_str()
        {
            self.resync = Some(live.frame.as_bytes().to_vec());
        }
    }

    /// Login sync, step 1: subscribe the user's own id paths and read their
    /// latest messages (among them the stored preferences).
    pub(super) fn start_login_sync(&mut self, user: u64) -> Op {
        let own = Pattern::parse(&idpath::user_pattern(user)).expect("user patterns are valid");
        self.subs.patterns.push(own.clone());
        self.merge.begin([own.clone()]);
        let (hub, conn, core) = (
            self.ctx.hub.clone(),
            self.subs.conn.clone(),
            self.ctx.core.clone(),
        );
        let limit = self.ctx.config.sync_latest_limit;
        Box::pin(async move {
            let result = async {
                hub.subscribe(&conn, &own)
                    .await
                    .map_err(|e| postoffice_error(None, e))?;
                core.latest(own, limit, Some(user))
                    .await
                    .map_err(|e| core_error(None, e))
            }
            .await;
            Done::SyncedOwn { user, result }
        })
    }

    /// Reads `{"subscribe": [patterns]}` from a preferences message.
    fn prefs_patterns(message: &Message) -> Vec<String> {
        message
            .body
            .as_json()
            .and_then(|b| b.get("subscribe").cloned())
            .and_then(|s| serde_json::from_value::<Vec<String>>(s).ok())
            .unwrap_or_default()
    }

    /// Makes the preference patterns `wanted` the live set: unsubscribes the
    /// ones dropped, subscribes the new ones and reads their latest messages.
    fn start_prefs_sync(&mut self, user: u64, wanted: Vec<String>) -> Op {
        let mut rejected = Vec::new();
        let mut want = Vec::new();
        for raw in wanted {
            match Pattern::parse_with(&raw, &self.ctx.config.limits) {
                Err(e) => rejected.push((
                    raw,
                    FrameError::new(None, ErrorCode::BadPattern, e.to_string()),
                )),
                Ok(p) if !self.grants.can_read(&p) => rejected.push((
                    raw,
                    FrameError::new(
                        None,
                        ErrorCode::Forbidden,
                        "the token does not allow reading this pattern",
                    ),
                )),
                Ok(p) if !want.contains(&p) => want.push(p),
                Ok(_) => {}
            }
        }
        let dropped: Vec<Pattern> = self
            .prefs
            .iter()
            .filter(|p| !want.contains(p))
            .cloned()
            .collect();
        let mut added = Vec::new();
        for p in &want {
            if self.subs.patterns.contains(p) {
                continue;
            }
            if self.subs.patterns.len() >= self.ctx.config.max_subscriptions {
                rejected.push((
                    p.to_string(),
                    FrameError::new(
                        None,
                        ErrorCode::TooManySubscriptions,
                        "subscription limit reached",
                    ),
                ));
                continue;
            }
            self.subs.patterns.push(p.clone());
            added.push(p.clone());
        }
        self.subs.patterns.retain(|p| !dropped.contains(p));
        for p in &dropped {
            self.merge.forget(p);
        }
        self.prefs = want;
        self.merge.begin(added.iter().cloned());
        let (hub, conn, core) = (
            self.ctx.hub.clone(),
            self.subs.conn.clone(),
            self.ctx.core.clone(),
        );
        let limit = self.ctx.config.sync_latest_limit;
        Box::pin(async move {
            for p in &dropped {
                if let Err(e) = hub.unsubscribe(&conn, p).await {
                    tracing::warn!(pattern = %p, error = %e, "unsubscribe failed");
                }
            }
            let mut pages = Vec::new();
            for p in added {
                let r = async {
                    hub.subscribe(&conn, &p)
                        .await
                        .map_err(|e| postoffice_error(None, e))?;
                    core.latest(p.clone(), limit, Some(user))
                        .await
                        .map_err(|e| core_error(None, e))
                }
                .await;
                match r {
                    Ok(page) => pages.push(page),
                    Err(e) => rejected.push((p.to_string(), e)),
                }
            }
            Done::SyncedPrefs {
                user,
                pages,
                rejected,
            }
        })
    }

    pub(super) fn start_prefs_resync(&mut self, frame: &[u8]) -> Option<Op> {
        let user = self.grants.user?;
        let message = Message::from_json(frame, &self.ctx.config.limits).ok()?;
        let wanted = Self::prefs_patterns(&message);
        Some(self.start_prefs_sync(user, wanted))
    }

    /// Login sync, step 1 done: the user's own latest messages go out, and
    /// step 2 (the preference patterns) follows.
    pub(super) async fn apply_synced_own(
        &mut self,
        user: u64,
        result: Result<Page, FrameError>,
    ) -> Result<(), Stop> {
        let own = Pattern::parse(&idpath::user_pattern(user)).expect("user patterns are valid");
        match result {
            Ok(page) => {
                let mut oldest_first = page.messages;
                oldest_first.reverse();
                let prefs_path = idpath::prefs_path(user);
                let wanted = oldest_first
                    .iter()
                    .find(|m| m.path == prefs_path)
                    .map(Self::prefs_patterns)
                    .unwrap_or_default();
                self.send_replay(oldest_first).await?;
                // The preference patterns are read next, as the following
                // operation; the own pattern is live now.
                self.next_op = Some(self.start_prefs_sync(user, wanted));
                self.settle(std::slice::from_ref(&own)).await
            }
            Err(e) => {
                self.subs.patterns.retain(|p| *p != own);
                self.settle(std::slice::from_ref(&own)).await?;
                self.send_err(e).await
            }
        }
    }

    pub(super) async fn apply_synced_prefs(
        &mut self,
        user: u64,
        pages: Vec<Page>,
        rejected: Vec<(String, FrameError)>,
    ) -> Result<(), Stop> {
        self.send_replay(Self::merged(pages)).await?;
        for (raw, _) in &rejected {
            if let Ok(p) = Pattern::parse(raw) {
                self.subs.patterns.retain(|x| *x != p);
                self.prefs.retain(|x| *x != p);
            }
        }
        let frame = json!({
            "op": "synced",
            "user": user.to_string(),
            "patterns": self.prefs.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            "rejected": rejected.iter().map(|(p, e)| json!({"pattern": p, "code": e.code.as_str(), "message": e.message})).collect::<Vec<_>>(),
        });
        self.send(frame.to_string()).await?;
        let settled = self.merge.pending().to_vec();
        self.settle(&settled).await
    }
}
