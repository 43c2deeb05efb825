"""Document loaders: PDF, Word, PowerPoint, Excel, CSV, saved web pages and EPUB as pages, slides,
sheets and chapters of headings, paragraphs and tables (see `registry.load_document`)."""
