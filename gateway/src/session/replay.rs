//! Replays: `sub` with `history` or `since`, and the reread after a
//! postoffice outage. All go through the connection's [`Merge`].
//!
//! A resume (`since`, a reread) reads the store a page at a time
//! (`resume_limit` messages), sends the page, and reads the next from the
//! last cursor of the one before, until a page is not full: its patterns
//! stay pending meanwhile, so live frames are held and nothing is missed
//! between the pages and the live stream. It starts `resume_overlap_ms`
//! before the position asked for (zero with one core). A resume longer
//! than `max_replay` stops there: for a `sub` the subscription is not made
//! live and `ok` says `"more":true`; the device subscribes again from the
//! cursor of the last message it got.

use std::collections::HashSet;

use super::*;

/// How far a paged replay has got.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Progress {
    /// Messages sent so far.
    pub total: usize,
    /// Pages read so far (a sparse pattern can read pages with few
    /// messages: the pages are bounded too).
    pub pages: usize,
    /// Retention may have deleted some of what was asked for.
    pub gap: bool,
    /// A reread's oldest message left out because the hub had fanned it
    /// out already (see [`Merge::cover_reread`]).
    pub left_out: Option<Cursor>,
    /// A `sub` with `since`: the furthest cursor it has reached, from the
    /// device's position on; its late read starts there.
    pub reached: Option<Cursor>,
    /// This reread is a resume's late read (its position and attempt), not
    /// one after an outage: it ends without a `reread` frame unless it has
    /// something to say.
    pub late: Option<(Cursor, u32)>,
    /// A page said replicas may still be on their way (`Page::stale`).
    pub stale: bool,
}

/// Late reads a resume makes at most while the core says replicas may be
/// on their way, each twice as long after the one before (with
/// `resume_settle_ms` of 2 s: 2, 4, 8, 16 and 32 s, about a minute, which
/// outlasts a hub's restart). After the last, the device is told that its
/// resume may have a gap.
pub(super) const LATE_READ_ATTEMPTS: u32 = 5;

/// A resume's late read, due `resume_settle_ms` after it (see
/// [`GatewayConfig::resume_settle_ms`](crate::config::GatewayConfig)), and
/// again later while the core says replicas may be on their way.
pub(super) struct LateRead {
    pub due: tokio::time::Instant,
    pub from: Cursor,
    pub patterns: Vec<Pattern>,
    /// 0 for the first; the delay doubles with each.
    pub attempt: u32,
}

/// `{"op":"reread",...}`: what a reread (or a resume's late read) sent,
/// whether the device should resubscribe (`more`), and whether something
/// may be missing (`gap`).
fn reread_frame(replayed: usize, more: bool, gap: bool) -> String {
    format!(r#"{{"op":"reread","replayed":{replayed},"more":{more},"gap":{gap}}}"#)
}

/// Oldest first by cursor, each UUID once (several patterns, or several
/// cores answering, may return the same message).
fn oldest_first(messages: &mut Vec<Message>) {
    messages.sort_by_key(|m| (m.cursor, m.uuid));
    let mut seen = HashSet::with_capacity(messages.len());
    messages.retain(|m| seen.insert(m.uuid));
}

/// One page of what `patterns` stored after `after`, oldest first, at most
/// `limit`, and where the next page starts if there is more. Each pattern's
/// read is complete up to its own `next`; the union is complete up to the
/// least of them, so the page ends there (and at `limit` messages).
async fn read_page(
    core: &dyn CoreClient,
    patterns: &[Pattern],
    after: Cursor,
    limit: usize,
    user: Option<u64>,
) -> Result<(Page, Option<Cursor>), CoreError> {
    let mut page = Page::default();
    let mut complete_to: Option<Cursor> = None;
    for p in patterns {
        let got = core.since(p.clone(), after, limit, user).await?;
        page.gap |= got.gap;
        page.stale |= got.stale;
        if got.more {
            // A page that says more without where: go on after its last.
            let next = got
                .next
                .or_else(|| got.messages.last().and_then(|m| m.cursor));
            complete_to = match (complete_to, next) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        page.messages.extend(got.messages);
    }
    oldest_first(&mut page.messages);
    if let Some(end) = complete_to {
        page.messages.retain(|m| m.cursor.is_some_and(|c| c <= end));
        page.more = true;
    }
    let mut next = complete_to;
    if page.messages.len() > limit {
        page.messages.truncate(limit);
        page.more = true;
        next = page.messages.last().and_then(|m| m.cursor);
    }
    Ok((page, next))
}

/// One page of a `sub` replay of `pattern`; a failure is the reply to `id`.
async fn read_sub_page(
    core: &dyn CoreClient,
    id: u64,
    pattern: &Pattern,
    after: Cursor,
    limit: usize,
    user: Option<u64>,
) -> Result<(Page, Option<Cursor>), FrameError> {
    read_page(core, std::slice::from_ref(pattern), after, limit, user)
        .await
        .map_err(|e| core_error(Some(id), e))
}

/// The outcome of reading one page of a `sub` replay.
fn replayed(
    id: u64,
    pattern: Pattern,
    read: Result<(Page, Option<Cursor>), FrameError>,
    progress: Option<Progress>,
) -> Done {
    let (result, next) = match read {
        Ok((page, next)) => (Ok(page), next),
        Err(e) => (Err(e), None),
    };
    Done::Replayed {
        id,
        pattern,
        result,
        next,
        progress,
    }
}

impl<T> Session<T>
where
    T: Stream<Item = Inbound> + Sink<Outbound> + Unpin + Send,
{
    /// Whether a resume may read another page: under `max_replay`
    /// messages, and under as many pages as those take plus a few (pages
    /// of a sparse pattern hold few messages but cost a bounded scan each).
    fn may_page_on(&self, progress: &Progress) -> bool {
        let c = &self.ctx.config;
        progress.total < c.max_replay && progress.pages < c.max_replay / c.resume_limit.max(1) + 10
    }

    /// Where a resume from `position` starts reading: the overlap window
    /// before it.
    fn resume_from(&self, position: Cursor) -> Cursor {
        match self.ctx.config.resume_overlap_ms.unwrap_or(0) {
            0 => position,
            window => position.earlier_by_millis(window),
        }
    }

    /// Starts a `sub` with `history` (the `k` latest) or `since` (what was
    /// stored after a cursor): the pattern goes pending, is bound upstream,
    /// then the store is read.
    pub(super) fn start_replay(
        &mut self,
        id: u64,
        pattern: Pattern,
        history: Option<u32>,
        since: Option<Cursor>,
    ) -> Op {
        self.merge.begin([pattern.clone()]);
        if let Some(position) = since {
            // The device has everything up to where it resumes from.
            self.merge.cover(&pattern, position);
        }
        let (hub, conn, core) = (
            self.ctx.hub.clone(),
            self.subs.conn.clone(),
            self.ctx.core.clone(),
        );
        let (limit, user) = (self.ctx.config.resume_limit, self.grants.user);
        let progress = since.map(|position| Progress {
            reached: Some(position),
            ..Progress::default()
        });
        let since = since.map(|c| self.resume_from(c));
        Box::pin(async move {
            let bound = hub
                .subscribe(&conn, &pattern)
                .await
                .map_err(|e| postoffice_error(Some(id), e));
            let read = match (bound, history, since) {
                (Err(e), _, _) => Err(e),
                (Ok(()), Some(k), _) => core
                    .history(pattern.clone(), k as usize, None, user)
                    .await
                    .map(|mut p| {
                        p.messages.reverse();
                        (p, None)
                    })
                    .map_err(|e| core_error(Some(id), e)),
                (Ok(()), None, after) => {
                    let after = after.unwrap_or_else(Cursor::now);
                    read_sub_page(core.as_ref(), id, &pattern, after, limit, user).await
                }
            };
            if read.is_err() {
                let _ = hub.unsubscribe(&conn, &pattern).await;
            }
            replayed(id, pattern, read, progress)
        })
    }

    /// The next page of a `sub` replay, from `after`.
    fn next_replay_page(&self, id: u64, pattern: Pattern, after: Cursor, progress: Progress) -> Op {
        let core = self.ctx.core.clone();
        let (limit, user) = (self.ctx.config.resume_limit, self.grants.user);
        Box::pin(async move {
            let read = read_sub_page(core.as_ref(), id, &pattern, after, limit, user).await;
            replayed(id, pattern, read, Some(progress))
        })
    }

    /// The hub is back on the postoffice: every active pattern goes pending
    /// at once (live frames from now on are held), and a reread of every
    /// subscribed pattern is queued. A pattern already pending (a replay or
    /// a reread under way) is reread too, once that is done: the read under
    /// way may have passed the point where this outage lost messages.
    pub(super) fn note_reread(&mut self, from: Cursor) {
        let all = self.subs.patterns.clone();
        if all.is_empty() {
            return;
        }
        let active: Vec<Pattern> = all
            .iter()
            .filter(|p| !self.merge.is_pending(p))
            .cloned()
            .collect();
        self.merge.begin(active);
        match &mut self.reread {
            Some((earliest, patterns)) => {
                *earliest = (*earliest).min(from);
                for p in all {
                    if !patterns.contains(&p) {
                        patterns.push(p);
                    }
                }
            }
            None => self.reread = Some((from, all)),
        }
    }

    /// Reads what the patterns stored after `from`, to replay it; a
    /// pattern unsubscribed meanwhile (its replay failed) is left out.
    pub(super) fn start_reread(&mut self, from: Cursor, mut patterns: Vec<Pattern>) -> Op {
        patterns.retain(|p| self.subs.patterns.contains(p));
        let after = self.resume_from(from);
        self.next_reread_page(patterns, after, Progress::default())
    }

    /// Queues the late read of a `sub` that resumed up to `reached`:
    /// `resume_settle_ms` from now, what `pattern` stored after `reached`
    /// (less the overlap window) is read once more. A late read already
    /// queued takes this one in: the earliest position, every pattern, the
    /// latest time.
    pub(super) fn queue_late_read(
        &mut self,
        patterns: Vec<Pattern>,
        reached: Cursor,
        attempt: u32,
    ) {
        let settle = self.ctx.config.resume_settle_ms.unwrap_or(0);
        if settle == 0 {
            return;
        }
        let delay = Duration::from_millis(settle.saturating_mul(1 << attempt.min(16)));
        let due = tokio::time::Instant::now() + delay;
        // What was replayed is remembered until the late read has come.
        self.merge
            .remember_until(Instant::now() + delay + REPLAY_MEMORY);
        match &mut self.late {
            Some(late) => {
                late.due = late.due.max(due);
                late.from = late.from.min(reached);
                late.attempt = late.attempt.min(attempt);
                for p in patterns {
                    if !late.patterns.contains(&p) {
                        late.patterns.push(p);
                    }
                }
            }
            None => {
                self.late = Some(LateRead {
                    due,
                    from: reached,
                    patterns,
                    attempt,
                })
            }
        }
    }

    /// Starts a late read: its patterns still subscribed go pending (live
    /// frames are held while it reads) and are read as a reread is, without
    /// what the hub fanned out already. `None` if none is subscribed.
    pub(super) fn start_late_read(&mut self, late: LateRead) -> Option<Op> {
        // A pattern already being read (a reread after an outage queued
        // meanwhile) has its late read after that one.
        let (busy, patterns): (Vec<Pattern>, Vec<Pattern>) = late
            .patterns
            .into_iter()
            .filter(|p| self.subs.patterns.contains(p))
            .partition(|p| self.merge.is_pending(p));
        if !busy.is_empty() {
            self.queue_late_read(busy, late.from, late.attempt);
        }
        if patterns.is_empty() {
            return None;
        }
        self.merge.begin(patterns.clone());
        let after = self.resume_from(late.from);
        let progress = Progress {
            late: Some((late.from, late.attempt)),
            ..Progress::default()
        };
        Some(self.next_reread_page(patterns, after, progress))
    }

    /// One page of a reread. What the hub fanned out live is left out: the
    /// connection had it, or has it in its outbox behind the reread marker
    /// (then the merge holds it, and the reread's cover stops below it).
    fn next_reread_page(
        &self,
        patterns: Vec<Pattern>,
        after: Cursor,
        mut progress: Progress,
    ) -> Op {
        let (core, hub) = (self.ctx.core.clone(), self.ctx.hub.clone());
        let (limit, user) = (self.ctx.config.resume_limit, self.grants.user);
        Box::pin(async move {
            let read = read_page(core.as_ref(), &patterns, after, limit, user).await;
            let (result, next) = match read {
                Ok((mut page, next)) => {
                    page.messages.retain(|m| {
                        let seen = hub.has_seen(&m.uuid);
                        if seen && let Some(c) = m.cursor {
                            progress.left_out = Some(progress.left_out.map_or(c, |l| l.min(c)));
                        }
                        !seen
                    });
                    (Ok(page), next)
                }
                Err(e) => (Err(core_error(None, e)), None),
            };
            Done::Reread {
                patterns,
                result,
                next,
                progress,
            }
        })
    }

    /// Sends replayed messages (oldest first) that the merge lets through.
    pub(super) async fn send_replay(&mut self, messages: Vec<Message>) -> Result<usize, Stop> {
        self.send_replayed(messages, false).await
    }

    /// [`send_replay`](Self::send_replay); with `late`, each frame says it
    /// comes from a resume's late read (`"late":true`): a replay after the
    /// `ok`, which, like any replay, may hold a message the device had on
    /// an earlier connection.
    async fn send_replayed(&mut self, messages: Vec<Message>, late: bool) -> Result<usize, Stop> {
        let fresh = self.merge.replay(messages, Instant::now());
        let deadline = self.write_deadline();
        for m in &fresh {
            let mut json = msg_frame(m);
            if late {
                json.pop();
                json.extend_from_slice(br#","late":true}"#);
            }
            let frame = Frame::try_from(json).map_err(|_| Stop)?;
            self.write_by(deadline, Some(Outbound::Text(frame))).await?;
        }
        Ok(fresh.len())
    }

    /// Ends the pending state of `patterns`; once nothing pends, the held
    /// live frames the merge releases go out, in arrival order.
    pub(super) async fn settle(&mut self, patterns: &[Pattern]) -> Result<(), Stop> {
        let released = self
            .merge
            .settle(patterns, &self.subs.patterns, Instant::now());
        if released.is_empty() {
            return Ok(());
        }
        let deadline = self.write_deadline();
        for live in released {
            self.note_prefs(&live);
            self.write_by(deadline, Some(Outbound::Text(live.frame.clone())))
                .await?;
        }
        self.write_by(deadline, None).await
    }

    pub(super) async fn apply_replayed(
        &mut self,
        id: u64,
        pattern: Pattern,
        result: Result<Page, FrameError>,
        next: Option<Cursor>,
        progress: Option<Progress>,
    ) -> Result<(), Stop> {
        let page = match result {
            Ok(page) => page,
            Err(e) => {
                self.subs.patterns.retain(|p| *p != pattern);
                self.merge.forget(&pattern);
                self.settle(std::slice::from_ref(&pattern)).await?;
                return self.send_err(e).await;
            }
        };
        let (more, gap) = (page.more, page.gap);
        let newest = page.messages.iter().filter_map(|m| m.cursor).max();
        self.merge.cover_all(&pattern, &page.messages);
        let n = self.send_replay(page.messages).await?;
        let Some(mut progress) = progress else {
            // `history`: one page; `more` says older messages exist.
            self.send(ok_frame(
                id,
                &format!(r#","replayed":{n},"more":{more},"gap":false"#),
            ))
            .await?;
            return self.settle(std::slice::from_ref(&pattern)).await;
        };
        progress.total += n;
        progress.pages += 1;
        progress.gap |= gap;
        progress.reached = progress.reached.max(newest);
        let stopped = match next {
            Some(after) if self.may_page_on(&progress) => {
                self.write_by(self.write_deadline(), None).await?;
                self.next_op = Some(self.next_replay_page(id, pattern, after, progress));
                return Ok(());
            }
            Some(_) => {
                // Too long a resume: not made live; the device subscribes
                // again from the last cursor it got.
                self.subs.patterns.retain(|p| *p != pattern);
                self.merge.forget(&pattern);
                let (hub, conn, p) = (
                    self.ctx.hub.clone(),
                    self.subs.conn.clone(),
                    pattern.clone(),
                );
                tokio::spawn(async move { hub.unsubscribe(&conn, &p).await });
                true
            }
            None => {
                if let Some(reached) = progress.reached {
                    self.queue_late_read(vec![pattern.clone()], reached, 0);
                }
                false
            }
        };
        self.send(ok_frame(
            id,
            &format!(
                r#","replayed":{},"more":{stopped},"gap":{}"#,
                progress.total, progress.gap
            ),
        ))
        .await?;
        self.settle(std::slice::from_ref(&pattern)).await
    }

    pub(super) async fn apply_reread(
        &mut self,
        patterns: Vec<Pattern>,
        result: Result<Page, FrameError>,
        next: Option<Cursor>,
        mut progress: Progress,
    ) -> Result<(), Stop> {
        let page = match result {
            Ok(page) => page,
            Err(_) if progress.late.is_some() => {
                // The resume itself succeeded; this read looked for
                // stragglers and could not: `more` has the device resume
                // each subscription from where it got, as after a reread
                // that stopped short.
                self.settle(&patterns).await?;
                return self.send(reread_frame(0, true, false)).await;
            }
            Err(mut e) => {
                self.settle(&patterns).await?;
                e.message = format!(
                    "rereading after a postoffice outage failed ({}); resubscribe with since",
                    e.message
                );
                return self.send_err(e).await;
            }
        };
        progress.gap |= page.gap;
        progress.stale |= page.stale;
        for p in &patterns {
            let matching = page.messages.iter().filter(|m| p.matches(&m.path));
            self.merge.cover_reread(p, matching, progress.left_out);
        }
        progress.total += self
            .send_replayed(page.messages, progress.late.is_some())
            .await?;
        progress.pages += 1;
        let more = match next {
            Some(after) if self.may_page_on(&progress) => {
                self.write_by(self.write_deadline(), None).await?;
                self.next_op = Some(self.next_reread_page(patterns, after, progress));
                return Ok(());
            }
            Some(_) => true,
            None => false,
        };
        if let Some((from, attempt)) = progress.late
            && !more
        {
            // Stragglers, if any, went out as messages. While the core
            // says more may be on their way, read again later; after the
            // last attempt, say the resume may have a gap.
            let gave_up = progress.stale && attempt + 1 >= LATE_READ_ATTEMPTS;
            if progress.stale && !gave_up {
                self.queue_late_read(patterns.clone(), from, attempt + 1);
            }
            self.settle(&patterns).await?;
            if gave_up {
                return self.send(reread_frame(progress.total, false, true)).await;
            }
            return Ok(());
        }
        self.send(reread_frame(progress.total, more, progress.gap))
            .await?;
        self.settle(&patterns).await
    }

    /// Sorts and dedupes pages read for several patterns (login sync).
    pub(super) fn merged(pages: Vec<Page>) -> Vec<Message> {
        let mut all: Vec<Message> = pages.into_iter().flat_map(|p| p.messages).collect();
        oldest_first(&mut all);
        all
    }
}
