//! RefCOCO-family readers, COCO masks (RLE) and segmentation metrics
