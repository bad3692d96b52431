//! EC2, for the one read build-finished makes of it: the launch template version a group
//! launches from (`DescribeLaunchTemplateVersions`).
//!
//! Why not `aws-sdk-ec2`: it models all of EC2's several hundred operations, and building it
//! costs more than every other crate of the workspace together (measured in
//! `docs/measuring.md`), in each of the three profiles CI builds. This one call goes through
//! the SDK's own machinery instead: the orchestrator of `aws-smithy-runtime` (the one the
//! generated clients and `aws-config`'s IMDS client run on), the SDK's SigV4 auth scheme, its
//! standard retry strategy with the configured `RetryConfig` and AWS's throttling and
//! transient error codes, the shared HTTPS client, and the SDK's EC2 Query writer and XML
//! decoder. Only the request's fields and the response's elements are spelled here, from the
//! botocore model of EC2 (`ec2/2016-11-15/service-2.json`).

use std::fmt;

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_runtime::auth::SigV4OperationSigningConfig;
use aws_runtime::auth::sigv4::{SCHEME_ID, SigV4AuthScheme};
use aws_runtime::retries::classifiers::AwsErrorCodeClassifier;
use aws_smithy_runtime::client::identity::IdentityCache;
use aws_smithy_runtime::client::orchestrator::operation::Operation;
use aws_smithy_runtime::client::retries::classifiers::{
    HttpStatusCodeClassifier, TransientErrorClassifier,
};
use aws_smithy_runtime_api::client::auth::static_resolver::StaticAuthSchemeOptionResolver;
use aws_smithy_runtime_api::client::auth::{
    AuthSchemeOptionResolverParams, SharedAuthScheme, SharedAuthSchemeOptionResolver,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse, OrchestratorError};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponentsBuilder;
use aws_smithy_runtime_api::client::runtime_plugin::StaticRuntimePlugin;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::Layer;
use aws_smithy_types::error::ErrorMetadata;
use aws_smithy_xml::decode::{Document, ScopedDecoder, XmlDecodeError, try_data};
use aws_types::SigningName;
use aws_types::region::SigningRegion;
use aws_types::service_config::ServiceConfigKey;
use prepull_core::launch_template::{DeviceMapping, TemplateRef, TemplateVersion};

use crate::aws::errors::aws_error;
use crate::error::PrepullError;

/// The EC2 API version every Query request names.
const API_VERSION: &str = "2016-11-15";
const OPERATION: &str = "DescribeLaunchTemplateVersions";

/// The codes EC2 answers a launch template or version that does not exist with (EC2 API
/// Reference, "Error codes for the Amazon EC2 API").
const NOT_FOUND: [&str; 4] = [
    "InvalidLaunchTemplateId.NotFound",
    "InvalidLaunchTemplateName.NotFoundException",
    "InvalidLaunchTemplateId.VersionNotFound",
    "InvalidLaunchTemplateId.Malformed",
];

type Describe = Operation<TemplateRef, TemplateVersion, ErrorMetadata>;

/// EC2 in the home region.
#[derive(Clone)]
pub struct Ec2 {
    describe: Result<Describe, String>,
}

impl fmt::Debug for Ec2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ec2").finish_non_exhaustive()
    }
}

impl Ec2 {
    /// An EC2 client on `config`: its region, credentials, HTTP client, retry and timeout
    /// settings, and the endpoint `AWS_ENDPOINT_URL_EC2` or `AWS_ENDPOINT_URL` names, as the
    /// generated clients read them.
    pub fn new(config: &SdkConfig) -> Self {
        Self {
            describe: describe_operation(config),
        }
    }

    /// The launch template version the group names; `None` when EC2 has no such template or
    /// version.
    pub async fn launch_template_version(
        &self,
        template: &TemplateRef,
    ) -> Result<Option<TemplateVersion>, PrepullError> {
        let describe = self
            .describe
            .as_ref()
            .map_err(|why| PrepullError::Unexpected {
                what: OPERATION,
                detail: format!("EC2 cannot be called: {why}"),
            })?;
        match describe.invoke(template.clone()).await {
            Ok(version) => Ok(Some(version)),
            Err(SdkError::ServiceError(error))
                if error.err().code().is_some_and(|c| NOT_FOUND.contains(&c)) =>
            {
                Ok(None)
            }
            Err(error) => Err(aws_error(OPERATION, error)),
        }
    }
}

fn endpoint(config: &SdkConfig, region: &str) -> String {
    let configured = config
        .service_config()
        .and_then(|service| {
            ServiceConfigKey::builder()
                .service_id("EC2")
                .env("AWS_ENDPOINT_URL")
                .profile("endpoint_url")
                .build()
                .ok()
                .and_then(|key| service.load_config(key))
        })
        .or_else(|| config.endpoint_url().map(str::to_owned));
    // EC2's regional endpoints (AWS General Reference, "Amazon EC2 endpoints"); China's
    // partition has its own domain.
    configured.unwrap_or_else(|| {
        let domain = if region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        format!("https://ec2.{region}.{domain}")
    })
}

fn describe_operation(config: &SdkConfig) -> Result<Describe, String> {
    let region = config
        .region()
        .ok_or("no AWS region is configured")?
        .clone();
    let credentials = config
        .credentials_provider()
        .ok_or("no AWS credentials provider is configured")?;
    let http_client = config.http_client().ok_or("no HTTP client is configured")?;

    let mut layer = Layer::new("prepull EC2");
    layer.store_put(AuthSchemeOptionResolverParams::new(()));
    layer.store_put(SigningName::from_static("ec2"));
    layer.store_put(SigningRegion::from(region.clone()));
    layer.store_put(SigV4OperationSigningConfig::default());
    let mut components = RuntimeComponentsBuilder::new("prepull EC2");
    components.set_auth_scheme_option_resolver(Some(SharedAuthSchemeOptionResolver::new(
        StaticAuthSchemeOptionResolver::new(vec![SCHEME_ID]),
    )));
    components.push_auth_scheme(SharedAuthScheme::new(SigV4AuthScheme::new()));
    components.set_identity_resolver(SCHEME_ID, credentials);
    components.set_identity_cache(Some(
        config
            .identity_cache()
            .unwrap_or_else(|| IdentityCache::lazy().build()),
    ));
    let auth = StaticRuntimePlugin::new()
        .with_config(layer.freeze())
        .with_runtime_components(components);

    let mut builder = Operation::builder()
        .service_name("EC2")
        .operation_name(OPERATION)
        .http_client(http_client)
        .endpoint_url(&endpoint(config, region.as_ref()))
        .standard_retry(
            &config
                .retry_config()
                .cloned()
                .unwrap_or_else(RetryConfig::standard),
        )
        .retry_classifier(AwsErrorCodeClassifier::<ErrorMetadata>::new())
        .retry_classifier(TransientErrorClassifier::<ErrorMetadata>::new())
        .retry_classifier(HttpStatusCodeClassifier::default())
        .runtime_plugin(auth);
    if let Some(behavior) = config.behavior_version() {
        builder = builder.behavior_version(behavior);
    }
    if let Some(timeouts) = config.timeout_config() {
        builder = builder.timeout_config(timeouts.clone());
    }
    if let Some(sleep) = config.sleep_impl() {
        builder = builder.sleep_impl(sleep);
    }
    if let Some(time) = config.time_source() {
        builder = builder.time_source(time);
    }
    Ok(builder
        .serializer(describe_request)
        .deserializer(read_describe_response)
        .build())
}

/// The EC2 Query request: the template by ID (or name, when the group holds only that) and
/// the one version the group uses. The botocore model names the list `LaunchTemplateVersion`
/// on the wire, and EC2's Query protocol flattens lists as `<name>.<n>`.
#[expect(
    clippy::needless_pass_by_value,
    reason = "the orchestrator hands a serializer its input by value"
)]
fn describe_request(
    template: TemplateRef,
) -> Result<HttpRequest, aws_smithy_runtime_api::box_error::BoxError> {
    let mut body = String::new();
    let mut writer = aws_smithy_query::QueryWriter::new(&mut body, OPERATION, API_VERSION);
    match (&template.id, &template.name) {
        (Some(id), _) => writer.prefix("LaunchTemplateId").string(id),
        (None, Some(name)) => writer.prefix("LaunchTemplateName").string(name),
        (None, None) => return Err("the group names no launch template ID or name".into()),
    }
    writer
        .prefix("LaunchTemplateVersion.1")
        .string(&template.version);
    writer.finish();
    let mut request = HttpRequest::new(SdkBody::from(body));
    request.set_method("POST")?;
    request.set_uri("/")?;
    request.headers_mut().insert(
        "content-type",
        "application/x-www-form-urlencoded; charset=utf-8",
    );
    Ok(request)
}

fn xml_error(error: XmlDecodeError) -> OrchestratorError<ErrorMetadata> {
    OrchestratorError::other(error)
}

fn read_describe_response(
    response: &HttpResponse,
) -> Result<TemplateVersion, OrchestratorError<ErrorMetadata>> {
    let body = std::str::from_utf8(response.body().bytes().unwrap_or_default())
        .map_err(OrchestratorError::other)?;
    if !response.status().is_success() {
        return Err(OrchestratorError::operation(
            read_error(body).map_err(xml_error)?,
        ));
    }
    let mut document = Document::new(body);
    let mut root = document.root_element().map_err(xml_error)?;
    let mut found = None;
    while let Some(mut element) = root.next_tag() {
        if element.start_el().matches("launchTemplateVersionSet") {
            while let Some(mut item) = element.next_tag() {
                if item.start_el().matches("item") && found.is_none() {
                    found = Some(read_version(&mut item).map_err(xml_error)?);
                }
            }
        }
    }
    // EC2 answers an unknown version with an error, so an empty set is not "not found".
    found.ok_or_else(|| {
        OrchestratorError::other(format!(
            "{OPERATION} answered {} without a launchTemplateVersionSet item",
            response.status()
        ))
    })
}

fn read_version(item: &mut ScopedDecoder<'_, '_>) -> Result<TemplateVersion, XmlDecodeError> {
    let mut version = TemplateVersion {
        version_number: None,
        image_id: None,
        block_devices: Vec::new(),
    };
    while let Some(mut field) = item.next_tag() {
        if field.start_el().matches("versionNumber") {
            version.version_number = try_data(&mut field)?.parse().ok();
        } else if field.start_el().matches("launchTemplateData") {
            while let Some(mut data) = field.next_tag() {
                if data.start_el().matches("imageId") {
                    version.image_id = Some(try_data(&mut data)?.into_owned());
                } else if data.start_el().matches("blockDeviceMappingSet") {
                    while let Some(mut mapping) = data.next_tag() {
                        if mapping.start_el().matches("item") {
                            version.block_devices.push(read_mapping(&mut mapping)?);
                        }
                    }
                }
            }
        }
    }
    Ok(version)
}

fn read_mapping(mapping: &mut ScopedDecoder<'_, '_>) -> Result<DeviceMapping, XmlDecodeError> {
    let mut device = DeviceMapping {
        device: String::new(),
        size_gib: None,
    };
    while let Some(mut field) = mapping.next_tag() {
        if field.start_el().matches("deviceName") {
            device.device = try_data(&mut field)?.into_owned();
        } else if field.start_el().matches("ebs") {
            while let Some(mut ebs) = field.next_tag() {
                if ebs.start_el().matches("volumeSize") {
                    device.size_gib = try_data(&mut ebs)?.parse().ok();
                }
            }
        }
    }
    Ok(device)
}

/// An EC2 error: `<Response><Errors><Error><Code>…</Code><Message>…</Message></Error></Errors>`
/// (EC2 API Reference, "Error codes": the EC2 Query error shape).
fn read_error(body: &str) -> Result<ErrorMetadata, XmlDecodeError> {
    let mut builder = ErrorMetadata::builder();
    let mut document = Document::new(body);
    let mut root = document.root_element()?;
    while let Some(mut errors) = root.next_tag() {
        if !errors.start_el().matches("Errors") {
            continue;
        }
        while let Some(mut error) = errors.next_tag() {
            if !error.start_el().matches("Error") {
                continue;
            }
            while let Some(mut field) = error.next_tag() {
                if field.start_el().matches("Code") {
                    builder = builder.code(try_data(&mut field)?);
                } else if field.start_el().matches("Message") {
                    builder = builder.message(try_data(&mut field)?);
                }
            }
        }
    }
    Ok(builder.build())
}
