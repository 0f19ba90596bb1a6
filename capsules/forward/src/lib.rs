//! The default capsule: route toward dst, deliver at dst
