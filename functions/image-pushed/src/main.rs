//! The `image-pushed` Lambda: an SQS batch of ECR push events (or one event invoked
//! directly) in, a JSON summary with `batchItemFailures` out.

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let common = prepull::common::init().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        prepull::metrics::flushed(prepull::image_pushed::handle(&common, event.payload))
    }))
    .await
}
