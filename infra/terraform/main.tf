locals {
  name = "kalshi-data-${var.environment}"
}

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:only the first three zones are used (slice below); a new zone changes nothing
  state = "available"
}

module "network" {
  source   = "./modules/network"
  name     = local.name
  vpc_cidr    = var.vpc_cidr
  azs         = slice(data.aws_availability_zones.available.names, 0, 3)
  kms_key_arn = module.secrets.kms_key_arn
}

module "secrets" {
  source = "./modules/secrets"
  name   = local.name
}

module "lake" {
  source      = "./modules/lake"
  name        = local.name
  bucket_name = var.lake_bucket_name
  kms_key_arn = module.secrets.kms_key_arn
}

module "iam" {
  source          = "./modules/iam"
  name            = local.name
  lake_bucket_arn = module.lake.bucket_arn
  kms_key_arn     = module.secrets.kms_key_arn
  parameter_arns  = module.secrets.parameter_arns
}

module "database" {
  source               = "./modules/database"
  name                 = local.name
  subnet_ids           = module.network.private_subnet_ids
  security_group_id    = module.network.database_security_group_id
  instance_class       = var.db_instance_class
  allocated_storage_gb = var.db_allocated_storage_gb
  kms_key_arn          = module.secrets.kms_key_arn
}

module "gatherer" {
  source               = "./modules/gatherer"
  name                 = local.name
  subnet_ids           = module.network.private_subnet_ids
  security_group_id    = module.network.gatherer_security_group_id
  instance_type        = var.gatherer_instance_type
  data_volume_gb       = var.gatherer_data_volume_gb
  instance_profile     = module.iam.gatherer_instance_profile
  dedup_profile        = module.iam.dedup_instance_profile
  kms_key_arn          = module.secrets.kms_key_arn
}

module "monitoring" {
  source          = "./modules/monitoring"
  name            = local.name
  alarm_email     = var.alarm_email
  gatherer_ids    = module.gatherer.instance_ids
  db_instance_id  = module.database.instance_id
  kms_key_arn     = module.secrets.kms_key_arn
}
