"""The benchmark's Python baseline, NOT part of prepull.

An "ECR push -> start the Image Builder pipeline" Lambda written the way the public samples
write it: a boto3 client created at import, one StartImagePipelineExecution per invocation,
whatever the event says. `make benchmark` runs it under awslambdaric (the AWS Lambda Python
runtime interface client from PyPI) on the same Runtime API host and bench as prepull's
functions, so its cold start and memory are a like-for-like reference. It does far less than
image-pushed: no manifest, no component version, no coalescing.
"""

import os

import boto3

imagebuilder = boto3.client("imagebuilder")
PIPELINE_ARN = os.environ["PREPULL_PIPELINE_ARN"]


def handler(event, context):
    response = imagebuilder.start_image_pipeline_execution(imagePipelineArn=PIPELINE_ARN)
    return {"imageBuildVersionArn": response["imageBuildVersionArn"]}
