"""The judge: scores an image against its caption with classical image analysis and Tesseract OCR."""
