# Least privilege. Gatherers: SSM (session manager + their parameters), CloudWatch agent; they may NOT write
# the lake. The dedup role: the same plus read/write of the lake bucket.

variable "name" {
  type = string
}

variable "lake_bucket_arn" {
  type = string
}

variable "kms_key_arn" {
  type = string
}

variable "parameter_arns" {
  type = list(string)
}

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "common" {
  statement {
    sid       = "ReadOwnParameters"
    actions   = ["ssm:GetParameter", "ssm:GetParameters"]
    resources = var.parameter_arns
  }
  statement {
    sid       = "DecryptParameters"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

data "aws_iam_policy_document" "lake_write" {
  statement {
    sid       = "ListLake"
    actions   = ["s3:ListBucket"]
    resources = [var.lake_bucket_arn]
  }
  statement {
    sid       = "WriteLake"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${var.lake_bucket_arn}/*"]
  }
  statement {
    sid       = "EncryptLake"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role" "gatherer" {
  name               = "${var.name}-gatherer"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

resource "aws_iam_role" "dedup" {
  name               = "${var.name}-dedup"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

resource "aws_iam_role_policy" "gatherer_common" {
  role   = aws_iam_role.gatherer.id
  policy = data.aws_iam_policy_document.common.json
}

resource "aws_iam_role_policy" "dedup_common" {
  role   = aws_iam_role.dedup.id
  policy = data.aws_iam_policy_document.common.json
}

resource "aws_iam_role_policy" "dedup_lake" {
  role   = aws_iam_role.dedup.id
  policy = data.aws_iam_policy_document.lake_write.json
}

resource "aws_iam_role_policy_attachment" "ssm" {
  for_each   = { gatherer = aws_iam_role.gatherer.name, dedup = aws_iam_role.dedup.name }
  role       = each.value
  policy_arn = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_role_policy_attachment" "cloudwatch_agent" {
  for_each   = { gatherer = aws_iam_role.gatherer.name, dedup = aws_iam_role.dedup.name }
  role       = each.value
  policy_arn = "arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy"
}

resource "aws_iam_instance_profile" "gatherer" {
  name = "${var.name}-gatherer"
  role = aws_iam_role.gatherer.name
}

resource "aws_iam_instance_profile" "dedup" {
  name = "${var.name}-dedup"
  role = aws_iam_role.dedup.name
}

output "gatherer_instance_profile" {
  value = aws_iam_instance_profile.gatherer.name
}

output "dedup_instance_profile" {
  value = aws_iam_instance_profile.dedup.name
}
