//! The `build-finished` Lambda: "EC2 Image Builder Image State Change" events, or
//! `{"action":"rollback"}` / `{"action":"republish","image":"…"}` / `{"action":"status"}` from
//! an operator, in; a JSON summary (or the status report) out.

use std::time::{Duration, Instant};

use lambda_runtime::{LambdaEvent, service_fn};
use prepull::build_finished::{FleetSettings, invoke};
use serde_json::Value;

/// Time kept back from the invocation's deadline to report what happened.
const REPORTING_MARGIN: Duration = Duration::from_secs(10);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let common = prepull::common::init().await?;
    let settings = prepull::common::init_settings(FleetSettings::from_env())?;
    let (common, settings) = (&common, &settings);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let now_ms = u64::try_from(common.clock.now().timestamp_millis()).unwrap_or_default();
        let remaining = Duration::from_millis(event.context.deadline.saturating_sub(now_ms))
            .saturating_sub(REPORTING_MARGIN);
        prepull::metrics::flushed(invoke(
            common,
            settings,
            event.payload,
            Instant::now() + remaining,
        ))
        .await
    }))
    .await
}
