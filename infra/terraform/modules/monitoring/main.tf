# CloudWatch: an SNS topic for alarms, log groups, the agent config (scrapes the Prometheus endpoints of
# every process into CloudWatch metrics, namespace kalshi-data) in SSM, and the alarms.

variable "name" {
  type = string
}

variable "alarm_email" {
  type = string
}

variable "gatherer_ids" {
  type = list(string)
}

variable "db_instance_id" {
  type = string
}

variable "kms_key_arn" {
  type = string
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = var.kms_key_arn
}

resource "aws_sns_topic_subscription" "email" {
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

resource "aws_cloudwatch_log_group" "app" {
  for_each          = toset(["gatherer", "writer", "dedup"])
  name              = "/${var.name}/${each.key}"
  retention_in_days = 365
  kms_key_id        = var.kms_key_arn
}

resource "aws_ssm_parameter" "agent_config" {
  name   = "/${var.name}/cloudwatch-agent"
  type   = "SecureString"
  key_id = var.kms_key_arn
  value = file("${path.module}/cloudwatch-agent.json")
}

locals {
  ns = "kalshi-data"
}

resource "aws_cloudwatch_metric_alarm" "capturing_nothing" {
  count               = length(var.gatherer_ids)
  alarm_name          = "${var.name}-g${count.index + 1}-capturing-nothing"
  alarm_description   = "No WebSocket frames received for 5 minutes"
  namespace           = local.ns
  metric_name         = "kd_ws_frames_total"
  dimensions          = { InstanceId = var.gatherer_ids[count.index] }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "LessThanOrEqualToThreshold"
  threshold           = 0
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "connections_down" {
  count               = length(var.gatherer_ids)
  alarm_name          = "${var.name}-g${count.index + 1}-connections-below-desired"
  alarm_description   = "WebSocket connections up below desired for 5 minutes"
  comparison_operator = "LessThanThreshold"
  evaluation_periods  = 5
  threshold           = 0
  alarm_actions       = [aws_sns_topic.alarms.arn]
  metric_query {
    id          = "missing"
    expression  = "up - desired"
    label       = "connections missing"
    return_data = true
  }
  metric_query {
    id = "up"
    metric {
      namespace   = local.ns
      metric_name = "kd_ws_connections_up"
      dimensions  = { InstanceId = var.gatherer_ids[count.index] }
      period      = 60
      stat        = "Minimum"
    }
  }
  metric_query {
    id = "desired"
    metric {
      namespace   = local.ns
      metric_name = "kd_ws_connections_desired"
      dimensions  = { InstanceId = var.gatherer_ids[count.index] }
      period      = 60
      stat        = "Maximum"
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "backlog" {
  count               = length(var.gatherer_ids)
  alarm_name          = "${var.name}-g${count.index + 1}-stream-backlog"
  alarm_description   = "Writer backlog above 10k entries for 15 minutes"
  namespace           = local.ns
  metric_name         = "kd_stream_backlog_entries"
  dimensions          = { InstanceId = var.gatherer_ids[count.index] }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = 10000
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "disk" {
  count               = length(var.gatherer_ids)
  alarm_name          = "${var.name}-g${count.index + 1}-disk-filling"
  alarm_description   = "Data volume more than 85% full"
  namespace           = "CWAgent"
  metric_name         = "disk_used_percent"
  dimensions          = { InstanceId = var.gatherer_ids[count.index], path = "/data" }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = 85
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "dedup_lag" {
  alarm_name          = "${var.name}-dedup-lag"
  alarm_description   = "A gatherer has not been merged into production for 5 minutes"
  namespace           = local.ns
  metric_name         = "kd_dedup_lag_seconds"
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = 300
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "book_audit_mismatch" {
  alarm_name          = "${var.name}-book-audit-mismatch"
  alarm_description   = "A REST order book differs from the captured book: a delta lost without a sequence gap"
  namespace           = local.ns
  metric_name         = "kd_book_audit_total"
  dimensions          = { result = "mismatched" }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "export_late" {
  alarm_name          = "${var.name}-export-late"
  alarm_description   = "No complete day exported to the lake for two days"
  namespace           = local.ns
  metric_name         = "kd_export_last_complete_day_seconds"
  statistic           = "Maximum"
  period              = 3600
  evaluation_periods  = 1
  comparison_operator = "LessThanThreshold"
  threshold           = 0
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "rds_storage" {
  alarm_name          = "${var.name}-rds-free-storage"
  alarm_description   = "Production database below 100 GB free"
  namespace           = "AWS/RDS"
  metric_name         = "FreeStorageSpace"
  dimensions          = { DBInstanceIdentifier = var.db_instance_id }
  statistic           = "Minimum"
  period              = 300
  evaluation_periods  = 2
  comparison_operator = "LessThanThreshold"
  threshold           = 100 * 1024 * 1024 * 1024
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

output "alarm_topic_arn" {
  value = aws_sns_topic.alarms.arn
}
