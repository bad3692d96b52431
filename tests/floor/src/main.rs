//! The floor `make benchmark` measures prepull's functions against: the `lambda_runtime`
//! hello world, started the same way as prepull's functions (the same runtime flavour and
//! release profile), that answers every event with its size and calls nothing.

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::{Value, json};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        let records = event
            .payload
            .get("Records")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        Ok::<_, lambda_runtime::Error>(json!({ "hello": "world", "records": records }))
    }))
    .await
}
