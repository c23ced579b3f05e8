# One customer-managed KMS key for the project (lake, RDS, volumes, logs, parameters) and the SSM
# parameters the hosts read at boot. Values are set out of band (aws ssm put-parameter); Terraform only
# creates the names, so no secret is ever in state or in git.

variable "name" {
  type = string
}

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}

resource "aws_kms_key" "this" {
  description             = "${var.name} data"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "account"
        Effect    = "Allow"
        Principal = { AWS = "arn:aws:iam::${data.aws_caller_identity.current.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "cloudwatch-logs"
        Effect    = "Allow"
        Principal = { Service = "logs.${data.aws_region.current.name}.amazonaws.com" }
        Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
      },
    ]
  })
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}

locals {
  prefix = "/${var.name}"
  parameters = {
    kalshi_api_key_id     = "Kalshi API key id"
    kalshi_private_key    = "Kalshi RSA private key (PEM)"
    gatherer_db_password  = "password of the gatherer databases"
    production_db_password = "password of the production database"
    redis_password        = "password of each gatherer's Redis"
  }
}

resource "aws_ssm_parameter" "this" {
  for_each    = local.parameters
  name        = "${local.prefix}/${each.key}"
  description = each.value
  type        = "SecureString"
  key_id      = aws_kms_key.this.arn
  value       = "set-me" # replaced out of band; Terraform never overwrites it
  lifecycle {
    ignore_changes = [value]
  }
}

output "kms_key_arn" {
  value = aws_kms_key.this.arn
}

output "parameter_arns" {
  value = [for p in aws_ssm_parameter.this : p.arn]
}

output "parameter_prefix" {
  value = local.prefix
}
