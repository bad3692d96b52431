//! prepull's CloudWatch metrics, written as Embedded Metric Format lines to stdout, which Lambda
//! sends to the function's log group and CloudWatch Logs turns into metrics: no
//! `PutMetricData` call, no extra permission, no latency ("Using the embedded metric format
//! with Lambda", CloudWatch User Guide).
//!
//! The recorder is `metrics_cloudwatch_embedded`, behind the `metrics` facade: it is the
//! maintained EMF emitter for Rust, writes the specification's `_aws` block with units, and
//! flushes to any writer when asked, so each invocation flushes before it answers (a metric
//! still buffered when the environment freezes would be lost). Every line carries the
//! `Function` and `Pipeline` dimensions; [`Metric::Publishes`] adds `Region`.

use std::sync::OnceLock;

use metrics_cloudwatch_embedded::{Builder, Collector};
use prepull_core::metrics::{
    FUNCTION_DIMENSION, Metric, NAMESPACE, PIPELINE_DIMENSION, REGION_DIMENSION, Unit,
};

static COLLECTOR: OnceLock<&'static Collector> = OnceLock::new();

/// Installs the recorder with the function's and the pipeline's dimensions. Metrics are not
/// worth failing a function for: a recorder that cannot be installed is logged, and the
/// function runs without metrics.
pub fn init(function: &str, pipeline: &str) {
    let installed = Builder::new()
        .cloudwatch_namespace(NAMESPACE)
        .with_dimension(FUNCTION_DIMENSION, function.to_owned())
        .with_dimension(PIPELINE_DIMENSION, pipeline.to_owned())
        .init();
    match installed {
        Ok(collector) => {
            for metric in Metric::ALL {
                let unit = match metric.unit() {
                    Unit::Count => metrics::Unit::Count,
                    Unit::Seconds => metrics::Unit::Seconds,
                };
                match metric.unit() {
                    Unit::Count => metrics::describe_counter!(metric.name(), unit, ""),
                    Unit::Seconds => metrics::describe_histogram!(metric.name(), unit, ""),
                }
            }
            // A second init in one process (tests) keeps the first collector.
            let _first = COLLECTOR.set(collector);
        }
        Err(error) => {
            tracing::error!(%error, "the metrics recorder could not be installed; no metrics");
        }
    }
}

/// The function's deployed name (Lambda sets `AWS_LAMBDA_FUNCTION_NAME`), or else the
/// executable's name.
pub fn function_name() -> String {
    std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| {
        std::env::args()
            .next()
            .and_then(|path| {
                std::path::Path::new(&path)
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "prepull".to_owned())
    })
}

/// Adds `count` to a counter.
pub fn count(metric: Metric, count: u64) {
    if count > 0 {
        metrics::counter!(metric.name()).increment(count);
    }
}

/// Adds one to a counter in one region's series.
pub fn count_in_region(metric: Metric, region: &str) {
    metrics::counter!(metric.name(), REGION_DIMENSION => region.to_owned()).increment(1);
}

/// Records one value of a distribution (every value is kept, so CloudWatch has percentiles).
pub fn record(metric: Metric, value: f64) {
    metrics::histogram!(metric.name()).record(value);
}

/// Writes what this invocation recorded to stdout and resets the counters.
pub fn flush() {
    if let Some(collector) = COLLECTOR.get()
        && let Err(error) = collector.flush(std::io::stdout().lock())
    {
        tracing::error!(%error, "the metrics could not be written");
    }
}

/// Runs one invocation and flushes its metrics before it answers.
pub async fn flushed<T>(invocation: impl Future<Output = T>) -> T {
    let answer = invocation.await;
    flush();
    answer
}
