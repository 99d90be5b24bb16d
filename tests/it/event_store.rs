//! The event log itself: optimistic concurrency and a cursor that never skips.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::FutureExt;
use liteskill::domain::conversation::Event;
use liteskill::domain::{self, Actor};
use liteskill::storage::StoreError;
use liteskill::storage::event_store::{self, Cursor, Scope};
use uuid::Uuid;

use crate::support::{TestApp, on_both_backends};

fn renamed(n: usize) -> domain::EncodedEvent {
    domain::encode(&Event::ConversationRenamed { title: format!("title {n}") })
}

async fn one_winner_per_version(app: TestApp) {
    let stream = Uuid::now_v7();
    for expected in 0..5 {
        let attempts = (0..8).map(|n| {
            let db = app.db().clone();
            tokio::spawn(async move {
                db.write(|conn| {
                    event_store::append(conn, stream, expected, Actor::System, domain::now(), vec![renamed(n)]).boxed()
                })
                .await
            })
        });
        let results = futures_util::future::join_all(attempts).await;
        let mut won = 0;
        for result in results {
            match result.expect("task") {
                Ok(events) => {
                    won += 1;
                    assert_eq!(events[0].stream_version, expected + 1);
                }
                Err(StoreError::Conflict(_)) => {}
                Err(other) => panic!("a lost race must be a conflict, not {other:?}"),
            }
        }
        assert_eq!(won, 1, "exactly one writer wins version {}", expected + 1);
    }
    let mut conn = app.db().conn().await.expect("connection");
    let versions: Vec<i64> =
        event_store::load_stream(&mut conn, stream).await.expect("load").iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, [1, 2, 3, 4, 5]);
}

/// Writers on many streams hold their transactions open for different times, so on
/// PostgreSQL positions commit out of order; a reader tailing the log by cursor must
/// still see every event exactly once, each stream in order.
async fn tailing_reader_sees_every_event_exactly_once(app: TestApp) {
    const WRITERS: usize = 8;
    const APPENDS: usize = 40;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let db = app.db().clone();
            tokio::spawn(async move {
                let stream = Uuid::now_v7();
                for n in 0..APPENDS {
                    let hold = Duration::from_micros(((w * 7 + n * 13) % 5) as u64 * 700);
                    let batch = if n % 5 == 0 { vec![renamed(n), renamed(n)] } else { vec![renamed(n)] };
                    let expected = (n + n.div_ceil(5)) as i64;
                    db.write(|conn| {
                        async move {
                            let events =
                                event_store::append(conn, stream, expected, Actor::System, domain::now(), batch)
                                    .await?;
                            tokio::time::sleep(hold).await;
                            Ok::<_, StoreError>(events)
                        }
                        .boxed()
                    })
                    .await
                    .expect("append");
                }
            })
        })
        .collect();
    let total = WRITERS * (APPENDS + APPENDS / 5);

    let mut cursor = Cursor::START;
    let mut seen = HashSet::new();
    let mut last_version: HashMap<Uuid, i64> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < total {
        assert!(tokio::time::Instant::now() < deadline, "reader saw {} of {total}", seen.len());
        let mut conn = app.db().conn().await.expect("connection");
        let batch = event_store::read_after(&mut conn, Scope::All, cursor, 25).await.expect("read");
        drop(conn);
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(2)).await;
            continue;
        }
        for event in batch {
            assert!(event.cursor() > cursor, "cursor moves forward");
            cursor = event.cursor();
            assert!(seen.insert(event.position), "event {} delivered twice", event.position);
            let previous = last_version.insert(event.stream_id.0, event.stream_version).unwrap_or(0);
            assert_eq!(event.stream_version, previous + 1, "stream order kept, nothing skipped");
        }
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    let mut conn = app.db().conn().await.expect("connection");
    assert!(
        event_store::read_after(&mut conn, Scope::All, cursor, 10).await.expect("read").is_empty(),
        "nothing after the end"
    );
    assert_eq!(event_store::count(&mut conn).await.expect("count"), total as i64);
}

#[test]
fn cursors_round_trip() {
    let cursor = Cursor { tx_id: 812, position: 9 };
    assert_eq!(Cursor::parse(&cursor.encode()), Some(cursor));
    assert_eq!(Cursor::parse("nope"), None);
    assert!(Cursor::START < Cursor { tx_id: 0, position: 1 });
}

/// Long streams are loaded from a snapshot; a snapshot that no longer reads is ignored.
async fn commands_on_long_streams_use_snapshots(app: TestApp) {
    use liteskill::domain::conversation::{Command, Conversation, ReplyOutcome};
    use liteskill::domain::ids::{ConversationId, MessageId, UserId};
    use liteskill::domain::values::{MessageContent, Title};
    use liteskill::storage::event_store::{ExecuteError, execute};
    use liteskill::storage::snapshots;

    let owner = UserId::new();
    let id = ConversationId::new().uuid();
    let run = |command: Command| {
        let db = app.db().clone();
        async move {
            db.write(|conn| {
                async move {
                    execute::<Conversation>(conn, id, Actor::User(owner), command).await.map_err(|e| match e {
                        ExecuteError::Store(store) => store,
                        ExecuteError::Rejected(r) => panic!("rejected: {r:?}"),
                    })
                }
                .boxed()
            })
            .await
            .expect("command")
        }
    };
    // A message whose reply is cancelled straight away: three events.
    let exchange = |n: usize| {
        let reply_id = MessageId::new();
        let send = Command::SendMessage {
            message_id: MessageId::new(),
            content: MessageContent::parse(&format!("message {n}")).expect("content"),
            reply_id,
            model_id: "demo".into(),
        };
        let finish = Command::FinishReply {
            message_id: reply_id,
            outcome: ReplyOutcome::Cancelled { partial_text: String::new() },
            tool_calls: vec![],
            max_rounds: 0,
            next: None,
        };
        (send, finish)
    };
    let seq_of = |events: &[event_store::RecordedEvent]| match events[0].decode() {
        Ok(domain::Event::Conversation(Event::UserMessageAdded { seq, .. })) => seq,
        other => panic!("unexpected {other:?}"),
    };
    run(Command::Create {
        owner,
        title: Title::parse("long").expect("title"),
        model_id: None,
        system_prompt: None,
        sampling: Default::default(),
        fork: None,
    })
    .await;
    for n in 1..=40 {
        let (send, finish) = exchange(n);
        assert_eq!(seq_of(&run(send).await), 2 * n as i64 - 1);
        run(finish).await;
    }
    let mut conn = app.db().conn().await.expect("connection");
    let (version, _) = snapshots::load(&mut conn, id).await.expect("load").expect("a snapshot was taken");
    assert_eq!(version, 100);

    // The snapshot is what the next command starts from: one that counts 500 messages
    // makes the next message number 501. (Saved at the stream's current version, 121,
    // so that no later event overrides it.)
    let (_, mut state) = snapshots::load(&mut conn, id).await.expect("load").expect("snapshot");
    state["state"]["message_count"] = serde_json::json!(500);
    snapshots::save(&mut conn, id, 121, state).await.expect("save");
    let (send, finish) = exchange(41);
    assert_eq!(seq_of(&run(send).await), 501);
    run(finish).await;

    // One that no longer reads (an older server's shape) is ignored: the log is replayed.
    snapshots::save(&mut conn, id, 124, serde_json::json!({ "from": "an older server" })).await.expect("save");
    drop(conn);
    let (send, _) = exchange(42);
    assert_eq!(seq_of(&run(send).await), 503);
}

on_both_backends!(
    one_winner_per_version,
    tailing_reader_sees_every_event_exactly_once,
    commands_on_long_streams_use_snapshots,
);
