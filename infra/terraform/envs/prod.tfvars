environment      = "prod"
region           = "us-east-1"
lake_bucket_name = "kalshi-data-prod-lake"
alarm_email      = "oncall@example.com"
