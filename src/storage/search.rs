//! Full-text search over every message a user may read, their forks' inherited history
//! included. The index is the database's own, kept as the `messages` projection writes
//! rows: a generated `tsvector` column with a GIN index on PostgreSQL, an FTS5 table fed
//! by triggers on SQLite; both stem English words. The two dialects differ only here.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Text};
use diesel_async::RunQueryDsl;

use super::projections::access::READABLE;
use super::projections::messages::MessageRow;
use super::sql_types::{DbUuid, Uuid};
use super::{DbConn, StoreResult, with_conn};
use crate::domain::ids::{ConversationId, UserId};

/// Marks around the matched words in a snippet: private-use characters, which user text
/// does not contain in practice, and which a client never mistakes for markup.
pub const MATCH_START: char = '\u{E000}';
pub const MATCH_END: char = '\u{E001}';

/// Words of a query; more are ignored.
const MAX_TERMS: usize = 12;

/// A search: the words to find (each also as a prefix), all of them in a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    terms: Vec<String>,
}

impl Query {
    /// The words of `text`; `None` when it has none.
    pub fn parse(text: &str) -> Option<Query> {
        let terms: Vec<String> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|word| !word.is_empty())
            .map(|word| word.chars().take(64).collect::<String>().to_lowercase())
            .take(MAX_TERMS)
            .collect();
        (!terms.is_empty()).then_some(Query { terms })
    }

    fn tsquery(&self) -> String {
        self.terms.iter().map(|t| format!("{t}:*")).collect::<Vec<_>>().join(" & ")
    }

    fn fts5(&self) -> String {
        self.terms.iter().map(|t| format!("\"{t}\"*")).collect::<Vec<_>>().join(" AND ")
    }
}

/// A message found, the readable conversation it was found through, how well it
/// matched (higher is better) and its matching passage with [`MATCH_START`] and
/// [`MATCH_END`] around the words found.
#[derive(Debug, Clone, QueryableByName)]
pub struct Hit {
    #[diesel(embed)]
    pub message: MessageRow,
    #[diesel(sql_type = Uuid)]
    pub via: DbUuid,
    #[diesel(sql_type = Double)]
    pub score: f64,
    #[diesel(sql_type = Text)]
    pub snippet: String,
}

impl Hit {
    pub fn conversation(&self) -> ConversationId {
        ConversationId::from_uuid(self.via.0)
    }
}

const COLUMNS: &str = "m.id, m.conversation_id, m.seq, m.role, m.content, m.author_id, m.created_at, m.status, \
    m.model_id, m.stop_reason, m.error, m.input_tokens, m.output_tokens, m.time_to_first_token_ms, m.duration_ms";

/// Best matches first, `limit` of them after the first `offset`.
pub async fn messages(
    conn: &mut DbConn,
    viewer: UserId,
    query: &Query,
    offset: i64,
    limit: i64,
) -> StoreResult<Vec<Hit>> {
    let viewer = DbUuid(viewer.uuid());
    Ok(with_conn!(conn,
        pg: |c| {
            // Ranks every readable match, then builds snippets for the page only.
            let sql = format!(
                "WITH readable AS ({readable}), \
                 visible AS (SELECT DISTINCT ON (l.ancestor_id) l.ancestor_id, l.until_seq, l.conversation_id AS via \
                   FROM conversation_lineage l JOIN readable r ON r.id = l.conversation_id \
                   ORDER BY l.ancestor_id, l.until_seq DESC), \
                 hits AS (SELECT m.id, v.via, ts_rank(m.search, q) AS score \
                   FROM messages m JOIN visible v ON m.conversation_id = v.ancestor_id AND m.seq <= v.until_seq, \
                   to_tsquery('english', $1) q WHERE m.search @@ q ORDER BY score DESC, m.id LIMIT $3 OFFSET $4) \
                 SELECT {COLUMNS}, h.via, h.score::float8 AS score, \
                   ts_headline('english', m.content, to_tsquery('english', $1), $5) AS snippet \
                 FROM hits h JOIN messages m ON m.id = h.id ORDER BY h.score DESC, m.id",
                readable = READABLE.replace("{viewer}", "$2"),
            );
            let options = format!(
                "StartSel={MATCH_START}, StopSel={MATCH_END}, MaxWords=30, MinWords=10, MaxFragments=2, \
                 FragmentDelimiter=\" … \""
            );
            diesel::sql_query(sql)
                .bind::<Text, _>(query.tsquery())
                .bind::<Uuid, _>(viewer)
                .bind::<BigInt, _>(limit)
                .bind::<BigInt, _>(offset)
                .bind::<Text, _>(options)
                .load::<Hit>(c)
                .await?
        },
        sqlite: |c| {
            // A bare column beside max() comes from the row holding the maximum.
            let sql = format!(
                "WITH readable AS ({readable}), \
                 visible AS (SELECT l.ancestor_id, max(l.until_seq) AS until_seq, l.conversation_id AS via \
                   FROM conversation_lineage l JOIN readable r ON r.id = l.conversation_id GROUP BY l.ancestor_id) \
                 SELECT {COLUMNS}, v.via, -bm25(message_search) AS score, \
                   snippet(message_search, 0, ?3, ?4, ' … ', 24) AS snippet \
                 FROM message_search JOIN messages m ON m.key = message_search.rowid \
                   JOIN visible v ON m.conversation_id = v.ancestor_id AND m.seq <= v.until_seq \
                 WHERE message_search MATCH ?1 ORDER BY score DESC, m.id LIMIT ?5 OFFSET ?6",
                readable = READABLE.replace("{viewer}", "?2"),
            );
            diesel::sql_query(sql)
                .bind::<Text, _>(query.fts5())
                .bind::<Uuid, _>(viewer)
                .bind::<Text, _>(MATCH_START.to_string())
                .bind::<Text, _>(MATCH_END.to_string())
                .bind::<BigInt, _>(limit)
                .bind::<BigInt, _>(offset)
                .load::<Hit>(c)
                .await?
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_keep_words_only() {
        let query = Query::parse("  Plan's \"run*\" OR -x; DROP ").expect("words");
        assert_eq!(query.terms, ["plan", "s", "run", "or", "x", "drop"]);
        assert_eq!(query.fts5(), "\"plan\"* AND \"s\"* AND \"run\"* AND \"or\"* AND \"x\"* AND \"drop\"*");
        assert!(query.tsquery().starts_with("plan:* & s:*"));
        assert_eq!(Query::parse(" *&|!() "), None);
    }
}
