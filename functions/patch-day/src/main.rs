//! The `patch-day` Lambda: `{"source":"schedule"}` from EventBridge Scheduler, or
//! `{"force":true,"reason":"…","dry_run":false}` from an operator, in; a JSON summary out.

use lambda_runtime::{LambdaEvent, service_fn};
use prepull::patch_day::{PatchDaySettings, handle};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let common = prepull::common::init().await?;
    let settings = prepull::common::init_settings(PatchDaySettings::from_env())?;
    let common = &common;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let now = common.clock.now();
        prepull::metrics::flushed(handle(
            common,
            settings,
            event.payload,
            &event.context.request_id,
            now,
        ))
        .await
    }))
    .await
}
