# Read by ansible/inventory/terraform_inventory.py (terraform output -json).
output "gatherer_hosts" {
  description = "Gatherer instances: id, private IP and availability zone, in AZ order (g1, g2, g3)."
  value       = module.gatherer.hosts
}

output "dedup_host" {
  description = "The instance running the RQ dedup worker and scheduler."
  value       = module.gatherer.dedup_host
}

output "production_db_endpoint" {
  description = "RDS endpoint (host:port); TLS required."
  value       = module.database.endpoint
}

output "lake_bucket" {
  description = "Parquet lake bucket name."
  value       = module.lake.bucket_name
}

output "parameter_prefix" {
  description = "SSM Parameter Store prefix holding the Kalshi key and database passwords."
  value       = module.secrets.parameter_prefix
}

output "alarm_topic_arn" {
  description = "SNS topic of the CloudWatch alarms."
  value       = module.monitoring.alarm_topic_arn
}
