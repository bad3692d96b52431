//! prepull's own clients reach the bench through the SDK's standard endpoint variables alone.
//!
//! This file holds one test on purpose: it sets process environment variables, which is only
//! sound while no other test in the same process reads them.

use prepull::aws::AwsClients;
use prepull_bench::bench::Bench;
use prepull_bench::emulator::Service;

#[tokio::test]
async fn shared_clients_follow_aws_endpoint_url_per_service() {
    let bench = Bench::start().await.unwrap();
    for (name, value) in bench.env() {
        // SAFETY: the only test in this binary; nothing else reads the environment meanwhile.
        unsafe { std::env::set_var(name, value) };
    }
    unsafe { std::env::remove_var("AWS_ENDPOINT_URL") };

    let clients = AwsClients::from_env().await;
    clients
        .imagebuilder()
        .list_components()
        .send()
        .await
        .expect("Image Builder via AWS_ENDPOINT_URL_IMAGEBUILDER");
    clients
        .autoscaling()
        .describe_auto_scaling_groups()
        .send()
        .await
        .expect("Auto Scaling via AWS_ENDPOINT_URL_AUTO_SCALING");
    clients
        .ssm()
        .describe_parameters()
        .send()
        .await
        .expect("SSM via AWS_ENDPOINT_URL_SSM");
    clients
        .ecr()
        .describe_repositories()
        .send()
        .await
        .expect("ECR via AWS_ENDPOINT_URL_ECR");

    let services: Vec<Service> = bench
        .emulator
        .requests()
        .into_iter()
        .map(|r| r.service)
        .collect();
    assert_eq!(
        services,
        [
            Service::Imagebuilder,
            Service::Autoscaling,
            Service::Ssm,
            Service::Ecr
        ]
    );
}
