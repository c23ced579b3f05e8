variable "region" {
  description = "AWS region; three availability zones of it are used."
  type        = string
  default     = "us-east-1"
}

variable "environment" {
  description = "Environment name (prod, staging); prefixes every resource."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR of the VPC; three private and three public /20 subnets are cut from it."
  type        = string
  default     = "10.40.0.0/16"
}

variable "gatherer_instance_type" {
  description = "EC2 type of each gatherer (WebSocket workers, Redis, TimescaleDB, writers)."
  type        = string
  default     = "m7i.2xlarge"
}

variable "gatherer_data_volume_gb" {
  description = "gp3 volume for TimescaleDB and the router spill on each gatherer."
  type        = number
  default     = 1000
}

variable "db_instance_class" {
  description = "RDS instance class of the production database."
  type        = string
  default     = "db.r7g.2xlarge"
}

variable "db_allocated_storage_gb" {
  description = "Initial RDS storage; autoscaling up to 4x."
  type        = number
  default     = 2000
}

variable "lake_bucket_name" {
  description = "Globally unique name of the Parquet lake bucket."
  type        = string
}

variable "alarm_email" {
  description = "Subscribed to the alarm SNS topic (confirm the e-mail AWS sends)."
  type        = string
}

variable "admin_cidrs" {
  description = "CIDRs allowed to reach the hosts through SSM only; kept for security group documentation."
  type        = list(string)
  default     = []
}
