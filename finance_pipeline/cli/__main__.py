from finance_pipeline.cli import main

main()
