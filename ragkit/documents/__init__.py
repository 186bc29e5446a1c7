"""Reading documents: finding files, extracting text blocks with line ranges and headings."""
