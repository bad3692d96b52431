//! ECR "ECR Image Action" events, delivered in an SQS batch or directly, read strictly.
//!
//! Every record ends up as exactly one of: a push to a watched image, a deletion that may have
//! taken a watched tag away, ignored with a reason, or rejected with an error naming the field.
//! Nothing is dropped without a trace.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::SqsMessage;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::image::{Digest, ImageRef, InvalidImage, Registry, Repository, Tag, quote};

/// A successful push that moved a watched tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub image: ImageRef,
    pub digest: Digest,
    pub time: DateTime<Utc>,
    pub event_id: String,
}

/// A successful deletion in a watched repository: of a watched tag, or of an image by digest,
/// which takes every tag of that image away. Only ECR can say what the tags name now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// The watched images whose tag the deletion may have removed.
    pub images: Vec<ImageRef>,
    pub digest: Digest,
    pub event_id: String,
}

/// Why a well-formed record needs no action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    NotAPush { action: String },
    NotSuccessful { result: String },
    PushByDigestOnly,
    NotWatched { image: String },
}

impl std::fmt::Display for Ignored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ignored::NotAPush { action } => {
                write!(f, "action-type is {action}, not PUSH or DELETE")
            }
            Ignored::NotSuccessful { result } => write!(f, "result is {result}, not SUCCESS"),
            Ignored::PushByDigestOnly => {
                f.write_str("push by digest only: image-tag is empty, so no tag moved")
            }
            Ignored::NotWatched { image } => write!(f, "{image} is not a watched image"),
        }
    }
}

/// Why a record cannot be read. It names the field; the value, if shown, is escaped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("the record body is not a JSON object: {0}")]
    NotJson(String),
    #[error("the {envelope} cannot be read: {problem}")]
    Envelope {
        envelope: &'static str,
        problem: String,
    },
    #[error("field `{field}` is missing or not a string")]
    Missing { field: &'static str },
    #[error("field `{field}` is {value}, expected {expected}")]
    Unexpected {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("field `{field}`: {source}")]
    Invalid {
        field: &'static str,
        source: InvalidImage,
    },
}

/// What one record amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Push(Push),
    Deleted(Deletion),
    Ignored(Ignored),
    Rejected(Rejected),
}

/// One record of the input with the id SQS knows it by (`None` for a direct invoke).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRecord {
    pub message_id: Option<String>,
    pub record: Record,
}

/// Splits the function's input into its records: an SQS batch (`Records`) whose bodies are
/// EventBridge events, or one bare EventBridge event. A record that does not read as an SQS
/// message, or whose body is not an event, is rejected alone: the rest of the batch goes on.
pub fn read_input(input: &Value, watched: &[ImageRef]) -> Result<Vec<InputRecord>, Rejected> {
    if let Some(records) = input.get("Records") {
        let records = records
            .as_array()
            .ok_or(Rejected::Missing { field: "Records" })?;
        return Ok(records
            .iter()
            .map(|raw| {
                // Taken from the raw record, so even a record that is not an SQS message can
                // be named in `batchItemFailures`.
                let message_id = raw
                    .get("messageId")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let record = match serde_path_to_error::deserialize::<_, SqsMessage>(raw) {
                    Ok(message) => read_message(&message, watched),
                    Err(error) => Record::Rejected(Rejected::Envelope {
                        envelope: "SQS message",
                        problem: cut(&error.to_string()),
                    }),
                };
                InputRecord { message_id, record }
            })
            .collect());
    }
    if !input.is_object() {
        return Err(Rejected::NotJson(
            "the input is neither an SQS batch nor an EventBridge event".to_owned(),
        ));
    }
    Ok(vec![InputRecord {
        message_id: None,
        record: classify(input, watched),
    }])
}

/// serde quotes the values it cannot read with `{:?}`, which escapes them; this keeps a 1 MB
/// value from becoming a 1 MB log line.
fn cut(problem: &str) -> String {
    const LIMIT: usize = 240;
    if problem.chars().count() > LIMIT {
        format!("{}…", problem.chars().take(LIMIT).collect::<String>())
    } else {
        problem.to_owned()
    }
}

fn read_message(message: &SqsMessage, watched: &[ImageRef]) -> Record {
    let Some(body) = message.body.as_deref() else {
        return Record::Rejected(Rejected::Missing { field: "body" });
    };
    match serde_json::from_str::<Value>(body) {
        Ok(event) if event.is_object() => classify(&event, watched),
        Ok(_) => Record::Rejected(Rejected::NotJson(
            "it is JSON, but not an object".to_owned(),
        )),
        Err(error) => Record::Rejected(Rejected::NotJson(error.to_string())),
    }
}

fn required<'a>(value: Option<&'a str>, field: &'static str) -> Result<&'a str, Rejected> {
    value.ok_or(Rejected::Missing { field })
}

fn text<'a>(detail: &'a Value, key: &str, field: &'static str) -> Result<&'a str, Rejected> {
    required(detail.get(key).and_then(Value::as_str), field)
}

fn expect(value: &str, field: &'static str, expected: &'static str) -> Result<(), Rejected> {
    if value == expected {
        Ok(())
    } else {
        Err(Rejected::Unexpected {
            field,
            value: quote(value),
            expected,
        })
    }
}

/// Reads one EventBridge event. Every field is validated before the watch list is consulted,
/// so a hostile value is rejected even for a repository nobody watches.
pub fn classify(event: &Value, watched: &[ImageRef]) -> Record {
    match classify_checked(event, watched) {
        Ok(record) => record,
        Err(rejected) => Record::Rejected(rejected),
    }
}

fn classify_checked(event: &Value, watched: &[ImageRef]) -> Result<Record, Rejected> {
    let envelope: EventBridgeEvent<Value> =
        serde_path_to_error::deserialize(event).map_err(|error| Rejected::Envelope {
            envelope: "EventBridge event",
            problem: cut(&error.to_string()),
        })?;
    expect(&envelope.source, "source", "aws.ecr")?;
    expect(&envelope.detail_type, "detail-type", "ECR Image Action")?;
    let event_id = event_id(envelope.id.as_deref())?;
    let time = envelope.time.ok_or(Rejected::Missing { field: "time" })?;
    let account = required(envelope.account.as_deref(), "account")?;
    let region = required(envelope.region.as_deref(), "region")?;
    let registry = Registry::for_account(account, region).map_err(|source| Rejected::Invalid {
        field: "account/region",
        source,
    })?;
    let detail = &envelope.detail;
    let action = text(detail, "action-type", "detail.action-type")?;
    let result = text(detail, "result", "detail.result")?;
    let repository = Repository::parse(text(detail, "repository-name", "detail.repository-name")?)
        .map_err(|source| Rejected::Invalid {
            field: "detail.repository-name",
            source,
        })?;
    let digest =
        Digest::parse(text(detail, "image-digest", "detail.image-digest")?).map_err(|source| {
            Rejected::Invalid {
                field: "detail.image-digest",
                source,
            }
        })?;
    let tag = image_tag(detail)?;
    for (field, value) in [("detail.action-type", action), ("detail.result", result)] {
        if value.is_empty()
            || value.len() > 32
            || !value.chars().all(|c| c.is_ascii_alphabetic() || c == '_')
        {
            return Err(Rejected::Unexpected {
                field,
                value: quote(value),
                expected: "an upper-case word",
            });
        }
    }
    if action != "PUSH" && action != "DELETE" {
        return Ok(Record::Ignored(Ignored::NotAPush {
            action: action.to_owned(),
        }));
    }
    if result != "SUCCESS" {
        return Ok(Record::Ignored(Ignored::NotSuccessful {
            result: result.to_owned(),
        }));
    }
    if action == "DELETE" {
        return Ok(deletion(
            watched,
            &registry,
            &repository,
            tag.as_ref(),
            digest,
            event_id,
        ));
    }
    let Some(tag) = tag else {
        return Ok(Record::Ignored(Ignored::PushByDigestOnly));
    };
    let image = ImageRef {
        registry,
        repository,
        tag,
    };
    if !watched.contains(&image) {
        return Ok(Record::Ignored(Ignored::NotWatched {
            image: image.to_string(),
        }));
    }
    Ok(Record::Push(Push {
        image,
        digest,
        time,
        event_id,
    }))
}

/// The event's id, as EventBridge writes it: letters, digits and `-`.
fn event_id(id: Option<&str>) -> Result<String, Rejected> {
    let event_id = required(id, "id")?.to_owned();
    if event_id.is_empty()
        || event_id.len() > 128
        || !event_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(Rejected::Unexpected {
            field: "id",
            value: quote(&event_id),
            expected: "an event id (letters, digits, -)",
        });
    }
    Ok(event_id)
}

/// The pushed or deleted tag; `None` for an image pushed by digest.
fn image_tag(detail: &Value) -> Result<Option<Tag>, Rejected> {
    // A multi-platform manifest list is pushed by digest, and its event carries no
    // `image-tag` at all: the same as an empty one. A tag that is there must be a string.
    let tag = match detail.get("image-tag") {
        None | Some(Value::Null) => "",
        Some(_) => text(detail, "image-tag", "detail.image-tag")?,
    };
    let tag = if tag.is_empty() {
        None
    } else {
        Some(Tag::parse(tag).map_err(|source| Rejected::Invalid {
            field: "detail.image-tag",
            source,
        })?)
    };
    Ok(tag)
}

/// A deletion in a watched repository: the watched tags it may have taken away. A deletion by
/// digest names no tag: every watched tag of the repository may be gone.
fn deletion(
    watched: &[ImageRef],
    registry: &Registry,
    repository: &Repository,
    tag: Option<&Tag>,
    digest: Digest,
    event_id: String,
) -> Record {
    let images: Vec<ImageRef> = watched
        .iter()
        .filter(|w| {
            w.registry == *registry
                && w.repository == *repository
                && tag.is_none_or(|t| w.tag == *t)
        })
        .cloned()
        .collect();
    if images.is_empty() {
        let what = match tag {
            Some(tag) => format!("{registry}/{repository}:{tag}"),
            None => format!("{registry}/{repository}@{digest}"),
        };
        return Record::Ignored(Ignored::NotWatched { image: what });
    }
    Record::Deleted(Deletion {
        images,
        digest,
        event_id,
    })
}

/// Splits a batch's pushes into those that decide their image and the images they cannot
/// decide. A standard SQS queue keeps no order and EventBridge times are whole seconds, so when
/// the newest pushes of one image share a time and differ in digest, nothing in the batch says
/// which came last: ECR's current digest for the tag does.
pub fn untie(pushes: &[Push]) -> (Vec<Push>, Vec<ImageRef>) {
    let mut tied: Vec<ImageRef> = Vec::new();
    for push in pushes {
        let newest = pushes
            .iter()
            .filter(|p| p.image == push.image)
            .map(|p| p.time)
            .max();
        let rivals = pushes
            .iter()
            .filter(|p| p.image == push.image && Some(p.time) == newest)
            .any(|p| p.digest != push.digest);
        if rivals && Some(push.time) == newest && !tied.contains(&push.image) {
            tied.push(push.image.clone());
        }
    }
    let decided = pushes
        .iter()
        .filter(|p| !tied.contains(&p.image))
        .cloned()
        .collect();
    (decided, tied)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn watched() -> Vec<ImageRef> {
        let registry = Registry::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com").unwrap();
        vec![ImageRef::parse("team/web:v42", &registry).unwrap()]
    }

    fn push(detail: &Value) -> Value {
        let mut event = json!({
            "version": "0", "id": "4f5ec4d5-5ea8-a2b6-0c2c-6c3bbd4a5e01", "detail-type": "ECR Image Action",
            "source": "aws.ecr", "account": "123456789012", "time": "2026-11-10T18:22:05Z", "region": "us-east-1",
            "resources": [],
            "detail": {"result": "SUCCESS", "repository-name": "team/web", "action-type": "PUSH", "image-tag": "v42",
                       "image-digest": format!("sha256:{}", "d".repeat(64))},
        });
        for (key, value) in detail.as_object().unwrap() {
            event["detail"][key] = value.clone();
        }
        event
    }

    #[test]
    fn a_watched_push_is_a_change() {
        let Record::Push(push) = classify(&push(&json!({})), &watched()) else {
            panic!()
        };
        assert_eq!(
            push.image.to_string(),
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/web:v42"
        );
        assert_eq!(push.time.to_rfc3339(), "2026-11-10T18:22:05+00:00");
    }

    #[test]
    fn a_deletion_names_the_watched_tags_it_may_have_removed() {
        let by_tag = classify(&push(&json!({"action-type": "DELETE"})), &watched());
        let Record::Deleted(deletion) = by_tag else {
            panic!("{by_tag:?}")
        };
        let names = |d: &Deletion| d.images.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            names(&deletion),
            ["123456789012.dkr.ecr.us-east-1.amazonaws.com/team/web:v42"]
        );
        // By digest: no tag, so every watched tag of the repository.
        let mut watched = watched();
        watched.push(
            ImageRef::parse(
                "team/web:v41",
                &Registry::for_account("123456789012", "us-east-1").unwrap(),
            )
            .unwrap(),
        );
        let by_digest = classify(
            &push(&json!({"action-type": "DELETE", "image-tag": ""})),
            &watched,
        );
        let Record::Deleted(deletion) = by_digest else {
            panic!("{by_digest:?}")
        };
        assert_eq!(
            names(&deletion),
            [
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/web:v42",
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/web:v41"
            ]
        );
    }

    #[test]
    fn other_well_formed_records_are_ignored_with_a_reason() {
        let cases = [
            (
                json!({"action-type": "REPLICATE"}),
                Ignored::NotAPush {
                    action: "REPLICATE".into(),
                },
            ),
            (
                json!({"action-type": "DELETE", "result": "FAILURE"}),
                Ignored::NotSuccessful {
                    result: "FAILURE".into(),
                },
            ),
            (
                json!({"action-type": "DELETE", "image-tag": "v43"}),
                Ignored::NotWatched {
                    image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/web:v43".into(),
                },
            ),
            (
                json!({"result": "FAILURE"}),
                Ignored::NotSuccessful {
                    result: "FAILURE".into(),
                },
            ),
            (json!({"image-tag": ""}), Ignored::PushByDigestOnly),
            (json!({"image-tag": null}), Ignored::PushByDigestOnly),
            (
                json!({"repository-name": "team/other"}),
                Ignored::NotWatched {
                    image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/other:v42".into(),
                },
            ),
            (
                json!({"image-tag": "v43"}),
                Ignored::NotWatched {
                    image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/web:v43".into(),
                },
            ),
        ];
        for (detail, expected) in cases {
            assert_eq!(
                classify(&push(&detail), &watched()),
                Record::Ignored(expected)
            );
        }
    }

    #[test]
    fn a_push_without_an_image_tag_field_is_a_push_by_digest() {
        let mut event = push(&json!({}));
        event["detail"].as_object_mut().unwrap().remove("image-tag");
        assert_eq!(
            classify(&event, &watched()),
            Record::Ignored(Ignored::PushByDigestOnly)
        );
        event["detail"]["image-tag"] = json!(42);
        assert!(matches!(
            classify(&event, &watched()),
            Record::Rejected(Rejected::Missing {
                field: "detail.image-tag"
            })
        ));
    }

    #[test]
    fn malformed_and_hostile_records_are_rejected_naming_the_field() {
        let cases = [
            (
                json!({"repository-name": "team/web'; Remove-Item C:\\"}),
                "detail.repository-name",
            ),
            (
                json!({"repository-name": "$(calc)"}),
                "detail.repository-name",
            ),
            (json!({"image-tag": "v1`calc`"}), "detail.image-tag"),
            (json!({"image-tag": "v1\nphases:"}), "detail.image-tag"),
            (json!({"image-tag": "ünïcode"}), "detail.image-tag"),
            (json!({"image-tag": "x".repeat(10_000)}), "detail.image-tag"),
            (
                json!({"image-digest": "sha256:nothex"}),
                "detail.image-digest",
            ),
            (json!({"repository-name": 42}), "detail.repository-name"),
        ];
        for (detail, field) in cases {
            let Record::Rejected(rejected) = classify(&push(&detail), &watched()) else {
                panic!("{detail}")
            };
            let message = rejected.to_string();
            assert!(message.contains(field), "{message}");
            assert!(!message.contains('\n') && message.len() < 400, "{message}");
        }
        let mut no_account = push(&json!({}));
        no_account["account"] = json!("evil.com/x");
        assert!(matches!(
            classify(&no_account, &watched()),
            Record::Rejected(Rejected::Invalid {
                field: "account/region",
                ..
            })
        ));
        let mut not_ecr = push(&json!({}));
        not_ecr["source"] = json!("aws.s3");
        assert!(matches!(
            classify(&not_ecr, &watched()),
            Record::Rejected(Rejected::Unexpected {
                field: "source",
                ..
            })
        ));
    }

    #[test]
    fn sqs_batches_keep_message_ids_and_reject_bad_bodies() {
        let batch = json!({"Records": [
            {"messageId": "m-1", "body": push(&json!({})).to_string()},
            {"messageId": "m-2", "body": "not json"},
            {"messageId": "m-3"},
        ]});
        let records = read_input(&batch, &watched()).unwrap();
        assert_eq!(
            records
                .iter()
                .map(|r| r.message_id.as_deref())
                .collect::<Vec<_>>(),
            [Some("m-1"), Some("m-2"), Some("m-3")]
        );
        assert!(matches!(records[0].record, Record::Push(_)));
        assert!(matches!(
            records[1].record,
            Record::Rejected(Rejected::NotJson(_))
        ));
        assert_eq!(
            records[2].record,
            Record::Rejected(Rejected::Missing { field: "body" })
        );
        let direct = read_input(&push(&json!({})), &watched()).unwrap();
        assert_eq!(direct[0].message_id, None);
        assert!(read_input(&json!([1, 2]), &watched()).is_err());
    }

    #[test]
    fn pushes_of_one_tag_in_one_second_are_left_to_ecr() {
        let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
        let registry = Registry::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com").unwrap();
        let image = |r: &str| ImageRef::parse(r, &registry).unwrap();
        let push = |r: &str, seed: char, time: &str| Push {
            image: image(r),
            digest: Digest::parse(&format!("sha256:{}", seed.to_string().repeat(64))).unwrap(),
            time: at(time),
            event_id: format!("e-{seed}"),
        };
        let pushes = [
            push("team/web:v1", 'a', "2026-11-10T10:00:00Z"),
            push("team/web:v1", 'b', "2026-11-10T10:00:00Z"),
            push("team/api:v1", 'c', "2026-11-10T10:00:00Z"),
            push("team/api:v1", 'd', "2026-11-10T10:00:01Z"),
            push("team/db:v1", 'e', "2026-11-10T10:00:00Z"),
            push("team/db:v1", 'e', "2026-11-10T10:00:00Z"),
        ];
        let (decided, tied) = untie(&pushes);
        assert_eq!(tied, [image("team/web:v1")], "same second, two digests");
        assert_eq!(
            decided
                .iter()
                .map(|p| p.event_id.as_str())
                .collect::<Vec<_>>(),
            ["e-c", "e-d", "e-e", "e-e"],
            "a later second decides; a repeated digest is no rival"
        );
    }
}
