"""Drives the bench with boto3 (botocore), to prove its wire format is not tuned to one client.

Reads the bench's environment (AWS_ENDPOINT_URL_*, credentials, region) like any AWS tool.
Exits non-zero, with a message, on the first check that fails.
"""

import json
import os
import sys
import urllib.request

import boto3

EMPTY_DOCUMENT = "name: prepull-cache\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: PullCachedImages\n        action: ExecutePowerShell\n        inputs:\n          commands:\n            - \"Write-Output 'prepull: no images to cache yet'\"\n"


def control(path, body):
    request = urllib.request.Request(
        os.environ["PREPULL_BENCH_URL"] + "/_bench/" + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def check_imagebuilder():
    ib = boto3.client("imagebuilder")
    component = ib.create_component(
        name="prepull-cache", semanticVersion="1.0.0", platform="Windows", data=EMPTY_DOCUMENT
    )["componentBuildVersionArn"]
    assert component.endswith("/prepull-cache/1.0.0/1"), component
    wildcard = component.rsplit("/", 2)[0] + "/x.x.x"
    assert ib.get_component(componentBuildVersionArn=wildcard)["component"]["arn"] == component

    try:
        ib.create_component(name="prepull-cache", semanticVersion="1.0.1", platform="Windows", data="x" * 16001)
        raise AssertionError("16,001 characters were accepted")
    except ib.exceptions.InvalidRequestException as error:
        # The service model's limit (InlineComponentData max 16000), checked before anything.
        assert "'data'" in str(error), error

    recipe = ib.create_image_recipe(
        name="boto-recipe",
        semanticVersion="1.0.0",
        parentImage="ami-0123456789abcdef0",
        components=[{"componentArn": wildcard}],
    )["imageRecipeArn"]
    infrastructure = ib.create_infrastructure_configuration(
        name="boto-infrastructure", instanceProfileName="prepull-image-builder"
    )["infrastructureConfigurationArn"]
    distribution = ib.create_distribution_configuration(
        name="boto-distribution",
        distributions=[{"region": "us-east-1", "amiDistributionConfiguration": {"name": "boto-{{imagebuilder:buildDate}}"}}],
    )["distributionConfigurationArn"]
    pipeline = ib.create_image_pipeline(
        name="boto-pipeline",
        imageRecipeArn=recipe,
        infrastructureConfigurationArn=infrastructure,
        distributionConfigurationArn=distribution,
    )["imagePipelineArn"]

    image = ib.start_image_pipeline_execution(
        imagePipelineArn=pipeline, clientToken="boto-build-1", tags={"prepull:manifest": "abc"}
    )["imageBuildVersionArn"]
    again = ib.start_image_pipeline_execution(
        imagePipelineArn=pipeline, clientToken="boto-build-1", tags={"prepull:manifest": "abc"}
    )["imageBuildVersionArn"]
    assert again == image, (again, image)
    try:
        ib.start_image_pipeline_execution(imagePipelineArn=pipeline, clientToken="boto-build-1", tags={"other": "x"})
        raise AssertionError("a reused token with other parameters was accepted")
    except ib.exceptions.IdempotentParameterMismatchException:
        pass

    summaries = ib.list_image_pipeline_images(imagePipelineArn=pipeline)["imageSummaryList"]
    assert [s["state"]["status"] for s in summaries] == ["BUILDING"], summaries
    event = control("imagebuilder/images/finish", {"imageBuildVersionArn": image, "status": "AVAILABLE"})
    assert event["detail"]["state"]["status"] == "AVAILABLE", event
    amis = ib.get_image(imageBuildVersionArn=image)["image"]["outputResources"]["amis"]
    assert len(amis) == 1 and amis[0]["image"].startswith("ami-"), amis
    try:
        ib.cancel_image_creation(imageBuildVersionArn=image, clientToken="boto-cancel-1")
        raise AssertionError("an AVAILABLE image was cancelled")
    except ib.exceptions.ResourceInUseException:
        pass


def check_autoscaling():
    asg = boto3.client("autoscaling")
    asg.create_auto_scaling_group(
        AutoScalingGroupName="boto-nodes",
        MinSize=1,
        MaxSize=3,
        DesiredCapacity=2,
        LaunchTemplate={"LaunchTemplateName": "windows-nodes", "Version": "$Latest"},
    )
    groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["boto-nodes"])["AutoScalingGroups"]
    assert groups[0]["DesiredCapacity"] == 2 and len(groups[0]["Instances"]) == 2, groups
    refresh = asg.start_instance_refresh(
        AutoScalingGroupName="boto-nodes",
        Preferences={"MinHealthyPercentage": 90, "InstanceWarmup": 300, "SkipMatching": False},
    )["InstanceRefreshId"]
    try:
        asg.start_instance_refresh(AutoScalingGroupName="boto-nodes")
        raise AssertionError("a second refresh started")
    except asg.exceptions.InstanceRefreshInProgressFault:
        pass
    described = asg.describe_instance_refreshes(AutoScalingGroupName="boto-nodes")["InstanceRefreshes"]
    assert described[0]["InstanceRefreshId"] == refresh, described
    assert described[0]["Preferences"]["MinHealthyPercentage"] == 90, described
    assert described[0]["Preferences"]["SkipMatching"] is False, described
    assert asg.cancel_instance_refresh(AutoScalingGroupName="boto-nodes")["InstanceRefreshId"] == refresh


def check_moto_services():
    ssm = boto3.client("ssm")
    ec2 = boto3.client("ec2")
    ami = ec2.register_image(Name="boto-node", RootDeviceName="/dev/sda1")["ImageId"]
    ssm.put_parameter(Name="/prepull/ami-id", Value=ami, Type="String", DataType="aws:ec2:image")
    assert ssm.get_parameter(Name="/prepull/ami-id")["Parameter"]["Value"] == ami
    # An AMI EC2 does not know: the write answers with a version that never appears.
    version = ssm.put_parameter(
        Name="/prepull/ami-id", Value="ami-0123456789abcdef0", Type="String", DataType="aws:ec2:image", Overwrite=True
    )["Version"]
    assert version == 2, version
    assert ssm.get_parameter(Name="/prepull/ami-id")["Parameter"]["Value"] == ami
    ecr = boto3.client("ecr")
    ecr.create_repository(repositoryName="team/web")
    assert [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]] == ["team/web"]


def main():
    for check in (check_imagebuilder, check_autoscaling, check_moto_services):
        check()
        print(f"ok: {check.__name__}")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as failure:
        print(f"FAILED: {failure!r}", file=sys.stderr)
        raise
