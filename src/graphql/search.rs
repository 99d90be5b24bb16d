//! `searchMessages`: ranked full-text search over every message the viewer may read.

use std::collections::HashMap;

use async_graphql::connection::Connection;
use async_graphql::{Context, Object, SimpleObject};

use super::conversation::{Conversation, Message};
use super::pagination::{page, page_size, position_after, position_cursor};
use super::{ApiResult, ContextExt};
use crate::error::AppError;
use crate::storage::projections::conversations;
use crate::storage::search::{self, Hit, MATCH_END, MATCH_START, Query};

/// A piece of a snippet: the words found are `highlighted`.
#[derive(SimpleObject)]
pub struct TextSpan {
    pub text: String,
    pub highlighted: bool,
}

/// A message found, in a conversation the viewer may read (for inherited history, the
/// fork it is read through).
#[derive(SimpleObject)]
pub struct SearchHit {
    pub message: Message,
    pub conversation: Conversation,
    /// The passage that matched, the words found highlighted.
    pub snippet: Vec<TextSpan>,
    /// How well it matched; higher is better. Only comparable within one search.
    pub score: f64,
}

/// `text` split at the match marks.
fn spans(text: &str) -> Vec<TextSpan> {
    let mut spans = vec![];
    let mut highlighted = false;
    let mut rest = text;
    while !rest.is_empty() {
        let mark = if highlighted { MATCH_END } else { MATCH_START };
        let (piece, after) = rest.split_once(mark).unwrap_or((rest, ""));
        if !piece.is_empty() {
            spans.push(TextSpan { text: piece.to_owned(), highlighted });
        }
        highlighted = !highlighted;
        rest = after;
    }
    spans
}

#[derive(Default)]
pub struct SearchQuery;

#[Object]
impl SearchQuery {
    /// Messages containing every word of `query` (stemmed, so "plans" finds "planning";
    /// each word also as a prefix), best match first, over every conversation the viewer
    /// may read, forks' inherited history included.
    async fn search_messages(
        &self,
        ctx: &Context<'_>,
        query: String,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Connection<String, SearchHit>> {
        let viewer = ctx.viewer()?;
        let limit = page_size(first, ctx.max_page_size())?;
        let offset = position_after(after.as_deref())?;
        let query = Query::parse(&query).ok_or_else(|| AppError::bad_input("query", "has no words to search for"))?;
        let mut conn = ctx.app().db.conn().await?;
        let hits = search::messages(&mut conn, viewer.user_id, &query, offset, limit as i64 + 1).await?;
        // One read for the page's conversations, however many hits each has.
        let ids: Vec<_> = hits.iter().map(Hit::conversation).collect();
        let rows = conversations::find_many(&mut conn, &ids).await?;
        let rows: HashMap<_, _> = rows.into_iter().map(|row| (row.conversation_id(), row)).collect();
        let mut found = Vec::with_capacity(hits.len());
        for (n, hit) in hits.into_iter().enumerate() {
            let conversation = rows.get(&hit.conversation()).cloned().ok_or(AppError::NotFound("conversation"))?;
            found.push((offset + n as i64 + 1, hit, conversation));
        }
        Ok(page(
            found,
            limit,
            offset > 0,
            |(position, ..)| position_cursor(*position),
            |(_, Hit { message, snippet, score, .. }, conversation)| SearchHit {
                message: Message(message),
                conversation: Conversation(conversation),
                snippet: spans(&snippet),
                score,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_split_at_the_marks() {
        let text = format!("a {MATCH_START}plan{MATCH_END} and {MATCH_START}plans{MATCH_END}");
        let parts: Vec<(String, bool)> = spans(&text).into_iter().map(|s| (s.text, s.highlighted)).collect();
        let expected = [("a ", false), ("plan", true), (" and ", false), ("plans", true)];
        assert_eq!(parts, expected.map(|(t, h)| (t.to_owned(), h)));
    }
}
