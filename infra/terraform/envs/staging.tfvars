environment            = "staging"
region                 = "us-east-1"
lake_bucket_name       = "kalshi-data-staging-lake"
alarm_email            = "oncall@example.com"
gatherer_instance_type = "m7i.large"
db_instance_class      = "db.r7g.large"
db_allocated_storage_gb = 200
